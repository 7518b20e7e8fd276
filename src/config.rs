//! Settings from `MCP_*` (and two `RATE_LIMIT_*`) environment variables,
//! checked once at start-up.
//!
//! [`WardenConfig::from_env`] reads the process environment;
//! [`WardenConfig::from_vars`] reads any list of pairs (for tests, or a
//! file you parsed yourself). Every value is validated here, so a server
//! that starts has usable settings, and a bad value is one
//! [`ConfigError`] naming the variable:
//!
//! ```
//! use tower_warden::config::WardenConfig;
//!
//! let error = WardenConfig::from_vars([("MCP_PORT", "eighty")]).unwrap_err();
//! assert_eq!(error.setting(), "MCP_PORT");
//!
//! let config = WardenConfig::from_vars([
//!     ("MCP_ALLOWED_IPS", r#"["10.0.0.0/8", "192.0.2.7"]"#),
//!     ("MCP_HTTP_MAX_BODY_BYTES", "65536"),
//! ])
//! .unwrap();
//! assert_eq!(config.allowed_ips.len(), 2);
//! assert_eq!(config.max_body_bytes, 65536);
//! ```
//!
//! # Variables
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `MCP_HOST` | `127.0.0.1` | address or name to listen on |
//! | `MCP_PORT` | `8000` | port to listen on (0–65535) |
//! | `MCP_ENVIRONMENT` | `development` | `development`, `staging` or `production` (`dev`, `stage`, `prod` too) |
//! | `MCP_AUTH_MODE` | `jwt` | `jwt`, `api_key`, `both`, or `none` (no authentication; `development` only) |
//! | `MCP_ALLOWED_IPS` | empty (all) | addresses / CIDRs allowed to connect |
//! | `MCP_BLOCKED_IPS` | empty | addresses / CIDRs refused |
//! | `MCP_TRUST_X_FORWARDED` | `false` | read `X-Forwarded-For` from trusted proxies; needs `MCP_TRUSTED_PROXIES` |
//! | `MCP_TRUSTED_PROXIES` | empty | addresses / CIDRs of the proxies in front of the server |
//! | `MCP_TRUSTED_PROXY_DEPTH` | `1` | proxies that append to `X-Forwarded-For` (1–64) |
//! | `MCP_CLIENT_CERT_REQUIRED` | `false` | require the TLS proxy's client-certificate header; needs `MCP_TRUSTED_PROXIES` |
//! | `MCP_CLIENT_CERT_HEADER` | `X-SSL-Client-Verify` | the header the proxy sets |
//! | `MCP_CLIENT_CERT_HEADER_VALUE` | `SUCCESS` | its value for a verified certificate |
//! | `MCP_HTTP_MAX_BODY_BYTES` (alias `MCP_MAX_REQUEST_SIZE`) | `1048576` | largest request body, in bytes |
//! | `MCP_ALLOWED_ORIGINS` | empty | browser origins allowed besides the server's own host |
//! | `MCP_ALLOWED_HOSTS` | `localhost,127.0.0.1,[::1]` | `Host` values served (any port unless one is given) |
//! | `MCP_JWT_SECRET` | ephemeral in `development` | HMAC secret for HS256/384/512; at least 32 bytes outside `development` |
//! | `MCP_JWT_ALGORITHM` | `HS256` (secret), `RS256` (public key) | `HS256` … `HS512`, `RS256` … `RS512`, `PS256` … `PS512`, `ES256`, `ES384`, `EdDSA` |
//! | `MCP_JWT_PUBLIC_KEY_FILE` | — | PEM public key (RSA, EC or Ed25519) |
//! | `MCP_JWKS_FILE` | — | JWKS document; keys chosen by `kid`, algorithm pinned per key |
//! | `MCP_JWKS_URL` | — | JWKS URL, refreshed every 5 min and on an unknown `kid` |
//! | `MCP_JWT_ISSUER` | — (not checked) | accepted `iss` values; required with `MCP_JWKS_URL` outside development |
//! | `MCP_JWT_AUDIENCE` | the resource URL | accepted `aud` values (RFC 8707) |
//! | `MCP_JWT_LEEWAY_SECONDS` | `30` | clock-skew allowance on `exp` / `nbf` (0–300) |
//! | `MCP_API_KEYS` | — | API keys, each granted every scope; at least 16 characters outside `development` |
//! | `MCP_API_KEYS_FILE` | — | one JSON object per line: `id`, `digest`, `namespace`, `roles`, `scopes` |
//! | `MCP_API_KEY_SALT` | random per start | salt of the key digests (at least 16 bytes; required with `MCP_API_KEYS_FILE`) |
//! | `MCP_TOOL_SCOPES` | — | JSON object: tool → scopes needed to call it (and to see it in `tools/list`) |
//! | `MCP_RESOURCE_URL` | `http://<host>:<port>/mcp` | the MCP endpoint as clients name it: token audience and RFC 9728 `resource` |
//! | `MCP_OAUTH_AUTHORIZATION_SERVERS` | — | authorization servers published in the RFC 9728 metadata |
//! | `MCP_WS_ALLOW_QUERY_AUTH` | `false` | accept `access_token` / `api_key` in the query of WebSocket upgrades |
//! | `MCP_RATE_LIMIT_ENABLED` | `true` | rate limit requests |
//! | `MCP_RATE_LIMIT_RPM` | `120` | requests a minute per key (at least 1) |
//! | `MCP_RATE_LIMIT_BURST` | `MCP_RATE_LIMIT_RPM` | requests at once per key (at least 1) |
//! | `RATE_LIMIT_WINDOW_MS` | — | with `RATE_LIMIT_MAX_REQUESTS`, the quota as a count per window (1 ms – 1 day) instead of `MCP_RATE_LIMIT_RPM` / `_BURST` |
//! | `RATE_LIMIT_MAX_REQUESTS` | — | requests per `RATE_LIMIT_WINDOW_MS` (at least 1); set both or neither |
//! | `MCP_RATE_LIMIT_STORAGE` | `memory` | `memory` (per process) or `redis` (shared) |
//! | `MCP_REDIS_URL` | — | `redis://` or `rediss://` URL (TLS: feature `redis-tls`); required with `MCP_RATE_LIMIT_STORAGE=redis`; its password is never printed |
//! | `MCP_REDIS_CA_FILE` | — | PEM certificates a `rediss://` server is verified against (default: the system's roots) |
//! | `MCP_RATE_LIMIT_FAIL_MODE` | `local` | while Redis is unreachable: `local` (count in memory), `closed` (refuse) or `open` (allow) |
//! | `MCP_RATE_LIMIT_MAX_KEYS` | `100000` | most keys the in-memory store tracks (at least 1) |
//! | `MCP_TOOL_RATE_LIMITS` | — | JSON object, tool → requests a minute: `{"search":30}` |
//! | `MCP_RATE_LIMIT_IPV6_PREFIX` | `64` | IPv6 clients are limited per prefix of this length (1–128) |
//! | `MCP_RATE_LIMIT_REDIS_PREFIX` | `tower-warden:rl:` | prefix of every Redis key the limiter writes; give each deployment sharing a Redis its own |
//! | `MCP_DATABASE_URL` | `sqlite://./data/mcp.db` | the gateway's connection store: `sqlite://path` (embedded; `sqlite::memory:` for throwaway) or `postgres://…` (shared by several instances); its password is never printed |
//! | `CIRCUIT_BREAKER_FAILURE_THRESHOLD` | `5` | consecutive failures that open an upstream's circuit breaker (at least 1) |
//! | `MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS` | `true` in development, else `false` | let tenants register upstreams on loopback, private and link-local addresses (off: such URLs are refused and host names are resolved to public addresses only) |
//! | `MCP_GATEWAY_MAX_CONNECTIONS` | `32` | most gateway connections one namespace may register (1–10000); one more is refused with 409 `connection_limit` |
//! | `MCP_GATEWAY_TOOLS_CACHE_TTL` | `60000` | milliseconds an upstream's tool list is reused before it is fetched again (0: never cached); deleting the connection drops it |
//! | `MCP_GATEWAY_FANOUT` | `8` | most upstreams one MCP `tools/list` asks at the same time (1–256) |
//! | `MCP_GATEWAY_CREDENTIAL_KEY` | — (development: a random key per start) | 64 hex digits (32 bytes): the AES-256-GCM key that encrypts stored upstream credentials; without it, outside development, a connection with a credential is refused; never printed |
//! | `MCP_GATEWAY_SCOPE` | `gateway:connections` | the scope every route of the gateway's connection API (`/api/v1/mcp/connections…`) requires; 403 `insufficient_scope` without it; set but empty stops start-up |
//! | `CIRCUIT_BREAKER_RESET_TIMEOUT` | `60000` | milliseconds an open breaker waits before letting a probe through (at least 1) |
//! | `MCP_CONFIG_FILE` | — | a TOML file with the same settings (see [below](#the-settings-file)); environment variables override it |
//! | `MCP_LOG_LEVEL` | `info` (or `RUST_LOG`) | log filter: a level (`error` … `trace`) or `tracing` directives (`info,tower_warden=debug`) |
//! | `MCP_LOG_FORMAT` | `text` in development, else `json` | `text` (for people) or `json` (one object per line, for collectors) |
//! | `MCP_AUDIT_LOG_FILE` | — | also append every audit event to this file as JSON lines |
//! | `MCP_METRICS_ALLOWED_IPS` | `127.0.0.0/8,::1` | clients that may read `/metrics` |
//! | `MCP_METRICS_PORT` | — (same listener) | serve `/metrics` on its own listener at this port (same host) |
//! | `MCP_CORS_ORIGINS` | empty (no CORS) | browser origins granted CORS; `*` (any origin) is refused in production |
//! | `MCP_REQUEST_TIMEOUT` | `30` | seconds a request may take before it is answered 504 (1–86400) |
//! | `MCP_ADMIN_ROLE` | `admin` | the role that may read `/status` |
//! | `MCP_SESSION_STORE` | `memory` | where MCP sessions live: `memory` (this instance) or `redis` (`MCP_REDIS_URL`; any instance serves any session) |
//! | `MCP_WS_PING_INTERVAL` | `30` | seconds between the server's pings on a WebSocket session (1–3600) |
//! | `MCP_WS_PING_TIMEOUT` | `10` | seconds a WebSocket peer has to answer a ping, or to take a frame the server sends, before the session is closed (1–3600) |
//!
//! Lists are written `a,b` or as a JSON array of strings `["a","b"]`. A
//! list that is set but names nothing (`MCP_METRICS_ALLOWED_IPS=`, `,` or
//! `[]`, in the environment or the file) stops start-up: for every list,
//! unset means the documented default and an empty list is never read as
//! "everyone" (or anything else).
//! Booleans are `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off` (any
//! case); anything else is an error. A variable set to the empty string
//! counts as unset. An `MCP_*` variable this module does not know stops
//! start-up with an error naming the closest known one (`unknown setting
//! MCP_ENV; did you mean MCP_ENVIRONMENT?`), so a typo never leaves a
//! default in place; variables without the prefix are ignored.
//!
//! # The settings file
//!
//! `MCP_CONFIG_FILE` names a TOML file holding the same settings (feature
//! `config-file`). A key is the variable's name in lower case without
//! `MCP_` (`jwt_secret`, `rate_limit_rpm`, `circuit_breaker_reset_timeout`);
//! tables may group keys by their first words, and lists, numbers and
//! booleans are written natively. An environment variable overrides the
//! file, and the file overrides the defaults. A key the loader does not know
//! is an error, so a typo cannot silently leave a default in place.
//!
//! ```toml
//! environment = "production"
//! allowed_ips = ["10.0.0.0/8"]
//! jwt_secret = "a-secret-of-at-least-thirty-two-bytes"
//!
//! [rate_limit]
//! rpm = 600
//! storage = "redis"
//!
//! [tool_scopes]
//! delete_record = ["records:write"]
//! ```
//!
//! A bad value names its variable and where it came from:
//! `invalid MCP_RATE_LIMIT_RPM: ... (from rate_limit.rpm in /etc/mcp.toml)`.
//! [`WardenConfig`] also implements `serde::Deserialize` over the same keys,
//! for settings embedded in a larger document.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::ConfigError;
use crate::net::parse_nets;

#[cfg(feature = "config-file")]
#[path = "config/file.rs"]
mod file;

/// The deployment environment (`MCP_ENVIRONMENT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Environment {
    /// A developer's machine: insecure conveniences are allowed.
    #[default]
    Development,
    /// A pre-production deployment: held to production rules.
    Staging,
    /// Production.
    Production,
}

impl Environment {
    /// Whether production rules apply: in every environment but
    /// development (staging included). The one place this is decided.
    #[must_use]
    pub const fn follows_production_rules(self) -> bool {
        !matches!(self, Self::Development)
    }

    /// The canonical name: `development`, `staging` or `production`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How callers authenticate (`MCP_AUTH_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMode {
    /// No authentication. Allowed only in [`Environment::Development`].
    None,
    /// JSON Web Tokens (`Authorization: Bearer`). The default.
    #[default]
    Jwt,
    /// API keys (`X-API-Key`, or a bearer value).
    ApiKey,
    /// Either a JWT or an API key.
    Both,
}

impl AuthMode {
    /// Whether JWTs are accepted.
    #[must_use]
    pub const fn jwt(self) -> bool {
        matches!(self, Self::Jwt | Self::Both)
    }

    /// Whether API keys are accepted.
    #[must_use]
    pub const fn api_key(self) -> bool {
        matches!(self, Self::ApiKey | Self::Both)
    }
}

impl AuthMode {
    /// The canonical name, e.g. `none`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Both => "both",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the reference server writes its logs (`MCP_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The canonical name: `text` or `json`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rate-limit quota per key: `MCP_RATE_LIMIT_RPM` / `MCP_RATE_LIMIT_BURST`,
/// or `RATE_LIMIT_WINDOW_MS` / `RATE_LIMIT_MAX_REQUESTS`.
///
/// Plain numbers, so this module builds without the `rate-limit` feature;
/// each form maps onto `rate_limit::Quota` (`Quota::per_minute` then
/// `with_burst`, or `Quota::per_window`), and every value accepted here
/// makes a valid quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitQuota {
    /// `requests` a minute, up to `burst` at once.
    PerMinute {
        /// `MCP_RATE_LIMIT_RPM`: at least 1.
        requests: u32,
        /// `MCP_RATE_LIMIT_BURST`: at least 1; defaults to `requests`.
        burst: u32,
    },
    /// `max_requests` per `window`, up to `max_requests` at once.
    Window {
        /// `RATE_LIMIT_WINDOW_MS`: at least 1 ms, and at least
        /// `max_requests` nanoseconds.
        window: Duration,
        /// `RATE_LIMIT_MAX_REQUESTS`: at least 1.
        max_requests: u32,
    },
}

impl Default for RateLimitQuota {
    fn default() -> Self {
        Self::PerMinute {
            requests: DEFAULT_RATE_LIMIT_RPM,
            burst: DEFAULT_RATE_LIMIT_RPM,
        }
    }
}

impl RateLimitQuota {
    fn to_json(self) -> serde_json::Value {
        match self {
            Self::PerMinute { requests, burst } => {
                serde_json::json!({"requests_per_minute": requests, "burst": burst})
            }
            Self::Window {
                window,
                max_requests,
            } => serde_json::json!({
                "window_ms": u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
                "max_requests": max_requests,
            }),
        }
    }
}

#[cfg(feature = "rate-limit")]
impl RateLimitQuota {
    /// The [`Quota`](crate::rate_limit::Quota) of these settings.
    ///
    /// # Errors
    ///
    /// Only for values built by hand that [`WardenConfig`]'s loaders would
    /// have refused; the error names the variable.
    pub fn to_quota(self) -> Result<crate::rate_limit::Quota, ConfigError> {
        use crate::rate_limit::Quota;
        match self {
            Self::PerMinute { requests, burst } => Quota::per_minute(requests)
                .map_err(|e| e.for_setting("MCP_RATE_LIMIT_RPM"))?
                .with_burst(burst)
                .map_err(|e| e.for_setting("MCP_RATE_LIMIT_BURST")),
            Self::Window {
                window,
                max_requests,
            } => Quota::per_window(window, max_requests)
                .map_err(|e| e.for_setting("RATE_LIMIT_WINDOW_MS")),
        }
    }
}

/// Where MCP sessions are kept (`MCP_SESSION_STORE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionStorage {
    /// In this process: a session works on the instance that opened it.
    #[default]
    Memory,
    /// In Redis (`MCP_REDIS_URL`): any instance serves any session.
    Redis,
}

impl SessionStorage {
    /// The canonical name: `memory` or `redis`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

/// Where rate-limit counters are kept (`MCP_RATE_LIMIT_STORAGE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitStorage {
    /// In this process: each replica counts on its own. The default.
    #[default]
    Memory,
    /// In Redis (`MCP_REDIS_URL`), shared by every replica.
    Redis,
}

impl RateLimitStorage {
    /// The canonical name: `memory` or `redis`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

impl fmt::Display for RateLimitStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a shared store does when its backend cannot be reached
/// (`MCP_RATE_LIMIT_FAIL_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitFailMode {
    /// Count in this process's memory until the backend is back. The
    /// default.
    #[default]
    Local,
    /// Refuse the request.
    Closed,
    /// Let the request through uncounted (the operator's explicit choice).
    Open,
}

impl RateLimitFailMode {
    /// The canonical name: `local`, `closed` or `open`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Closed => "closed",
            Self::Open => "open",
        }
    }
}

impl fmt::Display for RateLimitFailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "redis")]
impl From<RateLimitFailMode> for crate::rate_limit::FailMode {
    fn from(mode: RateLimitFailMode) -> Self {
        match mode {
            RateLimitFailMode::Local => Self::Local,
            RateLimitFailMode::Closed => Self::Closed,
            RateLimitFailMode::Open => Self::Open,
        }
    }
}

/// Every setting of the security perimeter and the reference server,
/// validated. See the [module docs](self) for the variables.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WardenConfig {
    /// `MCP_HOST`: the address or name to listen on.
    pub host: String,
    /// `MCP_PORT`: the port to listen on.
    pub port: u16,
    /// `MCP_ENVIRONMENT`.
    pub environment: Environment,
    /// `MCP_AUTH_MODE`.
    pub auth_mode: AuthMode,
    /// `MCP_ALLOWED_IPS`: when not empty, only these clients are served.
    pub allowed_ips: Vec<IpNet>,
    /// `MCP_BLOCKED_IPS`: clients that are refused.
    pub blocked_ips: Vec<IpNet>,
    /// `MCP_TRUST_X_FORWARDED`: resolve the client behind
    /// [`trusted_proxies`](Self::trusted_proxies) from `X-Forwarded-For`.
    pub trust_x_forwarded: bool,
    /// `MCP_TRUSTED_PROXIES`.
    pub trusted_proxies: Vec<IpNet>,
    /// `MCP_TRUSTED_PROXY_DEPTH`: the proxies that append to
    /// `X-Forwarded-For`.
    pub trusted_proxy_depth: usize,
    /// `MCP_CLIENT_CERT_REQUIRED`.
    pub client_cert_required: bool,
    /// `MCP_CLIENT_CERT_HEADER`: the header a trusted TLS proxy sets.
    pub client_cert_header: String,
    /// `MCP_CLIENT_CERT_HEADER_VALUE`: its value for a verified certificate.
    pub client_cert_header_value: String,
    /// `MCP_HTTP_MAX_BODY_BYTES` (or `MCP_MAX_REQUEST_SIZE`).
    pub max_body_bytes: u64,
    /// `MCP_ALLOWED_ORIGINS`: browser origins allowed besides the server's
    /// own host.
    pub allowed_origins: Vec<String>,
    /// `MCP_ALLOWED_HOSTS`: the `Host` values this server answers for.
    pub allowed_hosts: Vec<String>,
    /// `MCP_JWT_SECRET`: the HMAC secret of HS* tokens (secret).
    pub jwt_secret: Option<String>,
    /// `MCP_JWT_ALGORITHM`: `HS256` (default with a secret), `RS256`
    /// (default with a public key file), ... `EdDSA`.
    pub jwt_algorithm: Option<String>,
    /// `MCP_JWT_PUBLIC_KEY_FILE`: a PEM public key.
    pub jwt_public_key_file: Option<PathBuf>,
    /// `MCP_JWKS_FILE`: a JWKS document.
    pub jwks_file: Option<PathBuf>,
    /// `MCP_JWKS_URL`: where to fetch the JWKS.
    pub jwks_url: Option<String>,
    /// `MCP_JWT_ISSUER`: accepted `iss` values (empty: not checked).
    pub jwt_issuers: Vec<String>,
    /// `MCP_JWT_AUDIENCE`: accepted `aud` values; empty means the resource
    /// URL (`MCP_RESOURCE_URL`).
    pub jwt_audiences: Vec<String>,
    /// `MCP_JWT_LEEWAY_SECONDS`: clock-skew allowance on `exp`/`nbf`.
    pub jwt_leeway_seconds: u64,
    /// `MCP_API_KEYS`: accepted API keys, each with every scope (secret).
    pub api_keys: Vec<String>,
    /// `MCP_API_KEYS_FILE`: stored key digests with their principals.
    pub api_keys_file: Option<PathBuf>,
    /// `MCP_API_KEY_SALT`: the salt of the stored digests (secret).
    pub api_key_salt: Option<String>,
    /// `MCP_TOOL_SCOPES`: tool rule → scopes a caller needs to call it.
    /// A rule is a tool name, `*.<tool>` (that tool on any gateway
    /// connection, whatever its `server_name`) or `*` (every other tool);
    /// see [`ToolRules`](crate::tool_rules::ToolRules).
    pub tool_scopes: Vec<(String, Vec<String>)>,
    /// `MCP_RESOURCE_URL`: this server's MCP endpoint as clients name it
    /// (the token audience, RFC 8707); derived from host and port if unset.
    pub resource_url: Option<String>,
    /// `MCP_OAUTH_AUTHORIZATION_SERVERS`: issuers clients may get tokens
    /// from, published in the RFC 9728 metadata.
    pub oauth_authorization_servers: Vec<String>,
    /// `MCP_WS_ALLOW_QUERY_AUTH`: accept credentials in the query string of
    /// WebSocket upgrades.
    pub ws_allow_query_auth: bool,
    /// `MCP_RATE_LIMIT_ENABLED`: whether requests are rate limited.
    pub rate_limit_enabled: bool,
    /// The quota per key: `MCP_RATE_LIMIT_RPM` and `MCP_RATE_LIMIT_BURST`,
    /// or `RATE_LIMIT_WINDOW_MS` and `RATE_LIMIT_MAX_REQUESTS`.
    pub rate_limit_quota: RateLimitQuota,
    /// `MCP_RATE_LIMIT_STORAGE`: where the counters are kept.
    pub rate_limit_storage: RateLimitStorage,
    /// `MCP_REDIS_URL`: the Redis server of
    /// [`RateLimitStorage::Redis`] (`redis://` or `rediss://`; may hold a
    /// password, which `Debug` never prints).
    pub redis_url: Option<String>,
    /// `MCP_REDIS_CA_FILE`: PEM certificates a `rediss://` server's
    /// certificate is verified against, instead of the system's roots.
    pub redis_ca_file: Option<PathBuf>,
    /// `MCP_RATE_LIMIT_FAIL_MODE`: what a shared store does while its
    /// backend is unreachable.
    pub rate_limit_fail_mode: RateLimitFailMode,
    /// `MCP_RATE_LIMIT_MAX_KEYS`: the most keys the in-memory store tracks.
    pub rate_limit_max_keys: usize,
    /// `MCP_TOOL_RATE_LIMITS`: tool rule → requests a minute per key,
    /// rules as in [`tool_scopes`](Self::tool_scopes); every tool a rule
    /// matches draws on the rule's one allowance.
    pub tool_rate_limits: Vec<(String, u32)>,
    /// `MCP_RATE_LIMIT_IPV6_PREFIX`: IPv6 clients are limited per prefix of
    /// this length (1–128), since one host often holds a whole /64.
    pub rate_limit_ipv6_prefix: u8,
    /// `MCP_RATE_LIMIT_REDIS_PREFIX`: the prefix of every Redis key the
    /// limiter writes.
    pub rate_limit_redis_prefix: String,
    /// `MCP_DATABASE_URL`: where the gateway keeps its connections (may
    /// hold a password; redacted in `Debug`).
    pub database_url: String,
    /// `CIRCUIT_BREAKER_FAILURE_THRESHOLD`: consecutive failures that open
    /// an upstream's breaker.
    pub circuit_breaker_failure_threshold: u32,
    /// `CIRCUIT_BREAKER_RESET_TIMEOUT` (milliseconds): how long an open
    /// breaker waits before a probe.
    pub circuit_breaker_reset_timeout: Duration,
    /// `MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS`: whether gateway upstreams may
    /// be on loopback, private or link-local addresses (SSRF guard off).
    pub gateway_allow_private_upstreams: bool,
    /// `MCP_GATEWAY_MAX_CONNECTIONS`: most connections per namespace.
    pub gateway_max_connections: u32,
    /// `MCP_GATEWAY_TOOLS_CACHE_TTL` (milliseconds): how long an upstream's
    /// tool list is reused (zero: not cached).
    pub gateway_tools_cache_ttl: Duration,
    /// `MCP_GATEWAY_FANOUT`: most upstreams listed at once by one
    /// `tools/list`.
    pub gateway_fanout: usize,
    /// `MCP_GATEWAY_CREDENTIAL_KEY`: the key that encrypts stored upstream
    /// credentials (never printed).
    pub gateway_credential_key: Option<[u8; 32]>,
    /// `MCP_GATEWAY_SCOPE`: the scope every connection-API route requires.
    pub gateway_scope: String,
    /// `MCP_CONFIG_FILE`: the settings file these settings were read from.
    pub config_file: Option<PathBuf>,
    /// `MCP_LOG_LEVEL`: the log filter (a level or `tracing` directives);
    /// `None` leaves it to `RUST_LOG`, then `info`.
    pub log_level: Option<String>,
    /// `MCP_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `MCP_AUDIT_LOG_FILE`: where audit events are also appended as JSON
    /// lines.
    pub audit_log_file: Option<PathBuf>,
    /// `MCP_METRICS_ALLOWED_IPS`: the clients that may read `/metrics`
    /// (never empty when loaded; an empty list built by hand admits no one).
    pub metrics_allowed_ips: Vec<IpNet>,
    /// `MCP_METRICS_PORT`: a separate listener for `/metrics`.
    pub metrics_port: Option<u16>,
    /// `MCP_CORS_ORIGINS`: browser origins granted CORS (`*`: any).
    pub cors_origins: Vec<String>,
    /// `MCP_REQUEST_TIMEOUT` (seconds): how long a request may take.
    pub request_timeout: Duration,
    /// `MCP_ADMIN_ROLE`: the role that may read `/status`.
    pub admin_role: String,
    /// `MCP_ADMIN_ROLE` when it is set: the role that may work in every
    /// namespace (the gateway's connections). `None` by default: no role
    /// crosses namespaces unless configured.
    pub cross_namespace_role: Option<String>,
    /// `MCP_WS_PING_INTERVAL` (seconds): how often a WebSocket session is
    /// pinged.
    pub ws_ping_interval: Duration,
    /// `MCP_WS_PING_TIMEOUT` (seconds): how long a ping may go unanswered, or a
    /// frame to the client wait for it to read.
    pub ws_ping_timeout: Duration,
    /// `MCP_SESSION_STORE`: where MCP sessions are kept.
    pub session_store: SessionStorage,
}

impl fmt::Debug for WardenConfig {
    /// The settings as [`redacted_json`](Self::redacted_json) shows them:
    /// secrets and URL credentials are redacted by the same declaration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WardenConfig {}", self.redacted_json())
    }
}

impl Default for WardenConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8000,
            environment: Environment::Development,
            auth_mode: AuthMode::Jwt,
            allowed_ips: Vec::new(),
            blocked_ips: Vec::new(),
            trust_x_forwarded: false,
            trusted_proxies: Vec::new(),
            trusted_proxy_depth: 1,
            client_cert_required: false,
            client_cert_header: DEFAULT_CERT_HEADER.to_owned(),
            client_cert_header_value: DEFAULT_CERT_HEADER_VALUE.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allowed_origins: Vec::new(),
            allowed_hosts: DEFAULT_ALLOWED_HOSTS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            jwt_secret: None,
            jwt_algorithm: None,
            jwt_public_key_file: None,
            jwks_file: None,
            jwks_url: None,
            jwt_issuers: Vec::new(),
            jwt_audiences: Vec::new(),
            jwt_leeway_seconds: DEFAULT_JWT_LEEWAY_SECONDS,
            api_keys: Vec::new(),
            api_keys_file: None,
            api_key_salt: None,
            tool_scopes: Vec::new(),
            resource_url: None,
            oauth_authorization_servers: Vec::new(),
            ws_allow_query_auth: false,
            rate_limit_enabled: true,
            rate_limit_quota: RateLimitQuota::default(),
            rate_limit_storage: RateLimitStorage::Memory,
            redis_url: None,
            redis_ca_file: None,
            rate_limit_fail_mode: RateLimitFailMode::Local,
            rate_limit_max_keys: DEFAULT_RATE_LIMIT_MAX_KEYS,
            tool_rate_limits: Vec::new(),
            rate_limit_ipv6_prefix: DEFAULT_RATE_LIMIT_IPV6_PREFIX,
            rate_limit_redis_prefix: DEFAULT_RATE_LIMIT_REDIS_PREFIX.to_owned(),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            circuit_breaker_failure_threshold: DEFAULT_CIRCUIT_BREAKER_FAILURE_THRESHOLD,
            circuit_breaker_reset_timeout: DEFAULT_CIRCUIT_BREAKER_RESET_TIMEOUT,
            gateway_allow_private_upstreams: true,
            gateway_max_connections: 32,
            gateway_tools_cache_ttl: Duration::from_secs(60),
            gateway_fanout: 8,
            gateway_credential_key: None,
            gateway_scope: DEFAULT_GATEWAY_SCOPE.to_owned(),
            config_file: None,
            log_level: None,
            log_format: LogFormat::Text,
            audit_log_file: None,
            metrics_allowed_ips: default_metrics_allowed_ips(),
            metrics_port: None,
            cors_origins: Vec::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            admin_role: DEFAULT_ADMIN_ROLE.to_owned(),
            cross_namespace_role: None,
            ws_ping_interval: DEFAULT_WS_PING_INTERVAL,
            ws_ping_timeout: DEFAULT_WS_PING_TIMEOUT,
            session_store: SessionStorage::Memory,
        }
    }
}

/// Default `MCP_JWT_LEEWAY_SECONDS`.
pub const DEFAULT_JWT_LEEWAY_SECONDS: u64 = 30;
/// Shortest `MCP_JWT_SECRET` accepted outside development, in bytes.
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Shortest `MCP_API_KEYS` entry accepted outside development.
pub const MIN_API_KEY_CHARS: usize = 16;
const JWT_ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// Default `MCP_HTTP_MAX_BODY_BYTES`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const DEFAULT_CERT_HEADER: &str = "X-SSL-Client-Verify";
const DEFAULT_CERT_HEADER_VALUE: &str = "SUCCESS";
const DEFAULT_ALLOWED_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];
const MAX_PROXY_DEPTH: usize = 64;

/// Default `MCP_RATE_LIMIT_RPM` (and so `MCP_RATE_LIMIT_BURST`): two
/// requests a second on average per key, enough for an agent's bursts of
/// tool calls.
pub const DEFAULT_RATE_LIMIT_RPM: u32 = 120;
/// Default `MCP_RATE_LIMIT_MAX_KEYS`.
pub const DEFAULT_RATE_LIMIT_MAX_KEYS: usize = 100_000;
/// Default `MCP_RATE_LIMIT_IPV6_PREFIX`: one quota per /64.
pub const DEFAULT_RATE_LIMIT_IPV6_PREFIX: u8 = 64;
/// Default `MCP_DATABASE_URL`: an SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/mcp.db";
/// Default `CIRCUIT_BREAKER_FAILURE_THRESHOLD`.
pub const DEFAULT_CIRCUIT_BREAKER_FAILURE_THRESHOLD: u32 = 5;
/// Default `CIRCUIT_BREAKER_RESET_TIMEOUT`: one minute.
pub const DEFAULT_CIRCUIT_BREAKER_RESET_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `MCP_RATE_LIMIT_REDIS_PREFIX`.
pub const DEFAULT_RATE_LIMIT_REDIS_PREFIX: &str = "tower-warden:rl:";

/// Default `MCP_REQUEST_TIMEOUT`: 30 seconds.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `MCP_REQUEST_TIMEOUT`: one day.
pub const MAX_REQUEST_TIMEOUT_SECONDS: u64 = 24 * 60 * 60;
/// Default `MCP_WS_PING_INTERVAL`.
pub const DEFAULT_WS_PING_INTERVAL: Duration = Duration::from_secs(30);
/// Default `MCP_WS_PING_TIMEOUT`.
pub const DEFAULT_WS_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `MCP_ADMIN_ROLE`.
pub const DEFAULT_ADMIN_ROLE: &str = "admin";

/// The scope the gateway's connection API requires unless
/// `MCP_GATEWAY_SCOPE` names another.
pub const DEFAULT_GATEWAY_SCOPE: &str = "gateway:connections";

/// Default `MCP_METRICS_ALLOWED_IPS`: loopback only.
fn default_metrics_allowed_ips() -> Vec<IpNet> {
    vec![
        IpNet::V4(ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::LOCALHOST, 8).trunc()),
        IpNet::V6(ipnet::Ipv6Net::new_assert(
            std::net::Ipv6Addr::LOCALHOST,
            128,
        )),
    ]
}

/// Every environment variable [`WardenConfig`] reads. All start with `MCP_`
/// but `RATE_LIMIT_WINDOW_MS` and `RATE_LIMIT_MAX_REQUESTS`.
pub const VARIABLES: [&str; 65] = [
    "MCP_HOST",
    "MCP_PORT",
    "MCP_ENVIRONMENT",
    "MCP_AUTH_MODE",
    "MCP_ALLOWED_IPS",
    "MCP_BLOCKED_IPS",
    "MCP_TRUST_X_FORWARDED",
    "MCP_TRUSTED_PROXIES",
    "MCP_TRUSTED_PROXY_DEPTH",
    "MCP_CLIENT_CERT_REQUIRED",
    "MCP_CLIENT_CERT_HEADER",
    "MCP_CLIENT_CERT_HEADER_VALUE",
    "MCP_HTTP_MAX_BODY_BYTES",
    "MCP_MAX_REQUEST_SIZE",
    "MCP_ALLOWED_ORIGINS",
    "MCP_ALLOWED_HOSTS",
    "MCP_JWT_SECRET",
    "MCP_JWT_ALGORITHM",
    "MCP_JWT_PUBLIC_KEY_FILE",
    "MCP_JWKS_FILE",
    "MCP_JWKS_URL",
    "MCP_JWT_ISSUER",
    "MCP_JWT_AUDIENCE",
    "MCP_JWT_LEEWAY_SECONDS",
    "MCP_API_KEYS",
    "MCP_API_KEYS_FILE",
    "MCP_API_KEY_SALT",
    "MCP_TOOL_SCOPES",
    "MCP_RESOURCE_URL",
    "MCP_OAUTH_AUTHORIZATION_SERVERS",
    "MCP_WS_ALLOW_QUERY_AUTH",
    "MCP_RATE_LIMIT_ENABLED",
    "MCP_RATE_LIMIT_RPM",
    "MCP_RATE_LIMIT_BURST",
    "RATE_LIMIT_WINDOW_MS",
    "RATE_LIMIT_MAX_REQUESTS",
    "MCP_RATE_LIMIT_STORAGE",
    "MCP_REDIS_URL",
    "MCP_REDIS_CA_FILE",
    "MCP_RATE_LIMIT_FAIL_MODE",
    "MCP_RATE_LIMIT_MAX_KEYS",
    "MCP_TOOL_RATE_LIMITS",
    "MCP_RATE_LIMIT_IPV6_PREFIX",
    "MCP_RATE_LIMIT_REDIS_PREFIX",
    "MCP_DATABASE_URL",
    "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
    "CIRCUIT_BREAKER_RESET_TIMEOUT",
    "MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS",
    "MCP_GATEWAY_MAX_CONNECTIONS",
    "MCP_GATEWAY_TOOLS_CACHE_TTL",
    "MCP_GATEWAY_FANOUT",
    "MCP_GATEWAY_CREDENTIAL_KEY",
    "MCP_GATEWAY_SCOPE",
    "MCP_CONFIG_FILE",
    "MCP_LOG_LEVEL",
    "MCP_LOG_FORMAT",
    "MCP_AUDIT_LOG_FILE",
    "MCP_METRICS_ALLOWED_IPS",
    "MCP_METRICS_PORT",
    "MCP_CORS_ORIGINS",
    "MCP_REQUEST_TIMEOUT",
    "MCP_ADMIN_ROLE",
    "MCP_WS_PING_INTERVAL",
    "MCP_WS_PING_TIMEOUT",
    "MCP_SESSION_STORE",
];

/// The key of `variable` in a settings file and in
/// [`WardenConfig::redacted_json`]: lower case, without `MCP_`.
fn key_of(variable: &str) -> String {
    variable
        .strip_prefix("MCP_")
        .unwrap_or(variable)
        .to_ascii_lowercase()
}

struct Vars {
    values: [Option<String>; VARIABLES.len()],
    /// For a value read from the settings file: its key as written there.
    from_file: [Option<String>; VARIABLES.len()],
}

impl Vars {
    fn new() -> Self {
        Self {
            values: std::array::from_fn(|_| None),
            from_file: std::array::from_fn(|_| None),
        }
    }

    /// The value of `name`; a blank one counts as unset.
    fn get(&self, name: &'static str) -> Option<&str> {
        self.raw(name).filter(|value| !value.is_empty())
    }

    /// The value of `name` as given, blank or not.
    fn raw(&self, name: &'static str) -> Option<&str> {
        let index = VARIABLES.iter().position(|v| *v == name)?;
        self.values[index].as_deref()
    }

    /// Fills what the environment left unset from the settings file of
    /// `MCP_CONFIG_FILE`, if any.
    fn read_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = self.get("MCP_CONFIG_FILE").map(PathBuf::from) else {
            return Ok(());
        };
        #[cfg(feature = "config-file")]
        {
            for (index, value, key) in file::read(&path)? {
                if self.values[index].as_deref().is_none_or(str::is_empty) {
                    self.values[index] = Some(value);
                    self.from_file[index] = Some(format!("{key} in {}", path.display()));
                }
            }
            Ok(())
        }
        #[cfg(not(feature = "config-file"))]
        Err(ConfigError::new(
            "MCP_CONFIG_FILE",
            format!(
                "cannot read {}: settings files need the `config-file` feature",
                path.display()
            ),
        ))
    }

    /// `error`, saying which file key the faulty value came from.
    fn attribute(&self, error: ConfigError) -> ConfigError {
        let source = VARIABLES
            .iter()
            .position(|v| *v == error.setting())
            .and_then(|index| self.from_file[index].as_deref());
        match source {
            Some(source) => ConfigError::new(
                error.setting().to_owned(),
                format!("{} (from {source})", error.message()),
            ),
            None => error,
        }
    }
}

impl WardenConfig {
    /// Loads the settings from the process environment: every `MCP_*`
    /// variable, and the unprefixed ones of [`VARIABLES`]
    /// (`RATE_LIMIT_WINDOW_MS`, `RATE_LIMIT_MAX_REQUESTS`).
    ///
    /// # Errors
    ///
    /// The first invalid setting, by variable name. A variable whose value
    /// is not UTF-8 is invalid.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut pairs = Vec::new();
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str() else {
                let key = key.to_string_lossy();
                if key.starts_with("MCP_") {
                    return Err(unknown_setting(&key, VARIABLES.iter().copied()));
                }
                continue;
            };
            // `MCP_*`, and the two unprefixed `RATE_LIMIT_*` variables.
            if !key.starts_with("MCP_") && !VARIABLES.contains(&key) {
                continue;
            }
            let value = value
                .into_string()
                .map_err(|_| ConfigError::new(key.to_owned(), "the value is not valid UTF-8"))?;
            pairs.push((key.to_owned(), value));
        }
        Self::from_vars(pairs)
    }

    /// Loads the settings from `(name, value)` pairs; later pairs win.
    ///
    /// # Errors
    ///
    /// The first invalid setting, by variable name.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut table = Vars::new();
        for (key, value) in vars {
            let key = key.as_ref();
            if let Some(index) = VARIABLES.iter().position(|v| *v == key) {
                // Kept even when blank: a list set to nothing is refused,
                // while any other blank variable counts as unset.
                table.values[index] = Some(value.as_ref().trim().to_owned());
            } else if key.starts_with("MCP_") {
                // A typo (`MCP_ENV`) must not silently leave a default in
                // place, least of all the development environment.
                return Err(unknown_setting(key, VARIABLES.iter().copied()));
            }
        }
        table.read_file()?;
        Self::load(&table).map_err(|e| table.attribute(e))
    }

    /// The settings in TOML (the format of `MCP_CONFIG_FILE`), without
    /// looking at the environment.
    ///
    /// # Errors
    ///
    /// The text is not TOML, a key is unknown, or a value is invalid (by
    /// variable name).
    #[cfg(feature = "config-file")]
    #[cfg_attr(docsrs, doc(cfg(feature = "config-file")))]
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_settings(file::parse(text, "the TOML text")?)
    }

    #[cfg(feature = "config-file")]
    fn from_settings(settings: Vec<file::Setting>) -> Result<Self, ConfigError> {
        let mut table = Vars::new();
        for (index, value, key) in settings {
            table.values[index] = Some(value);
            table.from_file[index] = Some(key);
        }
        Self::load(&table).map_err(|e| table.attribute(e))
    }

    /// The certificates of `MCP_REDIS_CA_FILE`, read now, if it is set.
    ///
    /// # Errors
    ///
    /// The file cannot be read (named `MCP_REDIS_CA_FILE`).
    pub fn redis_ca_pem(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        self.redis_ca_file
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|e| {
                    ConfigError::new(
                        "MCP_REDIS_CA_FILE",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })
            })
            .transpose()
    }

    /// The effective settings as JSON, keyed like the settings file, with
    /// every secret replaced by `"<redacted>"` and the password and query
    /// values of every URL setting redacted (for a status page; `Debug`
    /// prints the same).
    #[must_use]
    pub fn redacted_json(&self) -> serde_json::Value {
        let strings = |items: &[IpNet]| items.iter().map(ToString::to_string).collect::<Vec<_>>();
        let mut out = serde_json::json!({
            "host": self.host,
            "port": self.port,
            "environment": self.environment.as_str(),
            "auth_mode": self.auth_mode.as_str(),
            "allowed_ips": strings(&self.allowed_ips),
            "blocked_ips": strings(&self.blocked_ips),
            "trust_x_forwarded": self.trust_x_forwarded,
            "trusted_proxies": strings(&self.trusted_proxies),
            "trusted_proxy_depth": self.trusted_proxy_depth,
            "client_cert_required": self.client_cert_required,
            "client_cert_header": self.client_cert_header,
            "client_cert_header_value": self.client_cert_header_value,
            "http_max_body_bytes": self.max_body_bytes,
            "allowed_origins": self.allowed_origins,
            "allowed_hosts": self.allowed_hosts,
            "jwt_secret": self.jwt_secret,
            "jwt_algorithm": self.jwt_algorithm,
            "jwt_public_key_file": self.jwt_public_key_file,
            "jwks_file": self.jwks_file,
            "jwks_url": self.jwks_url,
            "jwt_issuer": self.jwt_issuers,
            "jwt_audience": self.jwt_audiences,
            "jwt_leeway_seconds": self.jwt_leeway_seconds,
            "api_keys": self.api_keys,
            "api_keys_file": self.api_keys_file,
            "api_key_salt": self.api_key_salt,
        });
        let rest = serde_json::json!({
            "tool_scopes": self.tool_scopes.iter().map(|(t, s)| (t.clone(), serde_json::Value::from(s.clone()))).collect::<serde_json::Map<_, _>>(),
            "resource_url": self.resource_url,
            "oauth_authorization_servers": self.oauth_authorization_servers,
            "ws_allow_query_auth": self.ws_allow_query_auth,
            "rate_limit_enabled": self.rate_limit_enabled,
            "rate_limit_quota": self.rate_limit_quota.to_json(),
            "rate_limit_storage": self.rate_limit_storage.as_str(),
            "redis_url": self.redis_url,
            "redis_ca_file": self.redis_ca_file,
            "rate_limit_fail_mode": self.rate_limit_fail_mode.as_str(),
            "rate_limit_max_keys": self.rate_limit_max_keys,
            "tool_rate_limits": self.tool_rate_limits.iter().map(|(t, n)| (t.clone(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
            "rate_limit_ipv6_prefix": self.rate_limit_ipv6_prefix,
            "rate_limit_redis_prefix": self.rate_limit_redis_prefix,
            "database_url": self.database_url,
            "circuit_breaker_failure_threshold": self.circuit_breaker_failure_threshold,
            "circuit_breaker_reset_timeout": u64::try_from(self.circuit_breaker_reset_timeout.as_millis()).unwrap_or(u64::MAX),
            "gateway_allow_private_upstreams": self.gateway_allow_private_upstreams,
            "gateway_max_connections": self.gateway_max_connections,
            "gateway_tools_cache_ttl": u64::try_from(self.gateway_tools_cache_ttl.as_millis()).unwrap_or(u64::MAX),
            "gateway_fanout": self.gateway_fanout,
            "gateway_credential_key": self.gateway_credential_key.map(|_| "<redacted>"),
            "gateway_scope": self.gateway_scope,
            "config_file": self.config_file,
            "log_level": self.log_level,
            "log_format": self.log_format.as_str(),
            "audit_log_file": self.audit_log_file,
            "metrics_allowed_ips": strings(&self.metrics_allowed_ips),
            "metrics_port": self.metrics_port,
            "cors_origins": self.cors_origins,
            "request_timeout": self.request_timeout.as_secs(),
            "admin_role": self.admin_role,
            "ws_ping_interval": self.ws_ping_interval.as_secs(),
            "ws_ping_timeout": self.ws_ping_timeout.as_secs(),
            "session_store": self.session_store.as_str(),
        });
        if let (Some(out), serde_json::Value::Object(rest)) = (out.as_object_mut(), rest) {
            out.extend(rest);
            // Redacted by each setting's declaration, never field by field.
            for (key, value) in out.iter_mut() {
                if let Some(variable) = VARIABLES.iter().find(|v| key_of(v) == *key) {
                    redact(redaction(variable), value);
                }
            }
        }
        out
    }

    fn load(vars: &Vars) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(host) = vars.get("MCP_HOST") {
            if host.parse::<IpAddr>().is_err() && !is_host_name(host) {
                return Err(ConfigError::new(
                    "MCP_HOST",
                    format!("`{host}` is not an IP address or host name"),
                ));
            }
            config.host = host.to_owned();
        }
        if let Some(port) = vars.get("MCP_PORT") {
            config.port = port.parse().map_err(|_| {
                ConfigError::new(
                    "MCP_PORT",
                    format!("`{port}` is not a port number (0-65535)"),
                )
            })?;
        }
        if let Some(env) = vars.get("MCP_ENVIRONMENT") {
            config.environment = match env.to_ascii_lowercase().as_str() {
                "development" | "dev" => Environment::Development,
                "staging" | "stage" => Environment::Staging,
                "production" | "prod" => Environment::Production,
                _ => {
                    return Err(ConfigError::new(
                        "MCP_ENVIRONMENT",
                        format!("`{env}` is not one of development, staging, production"),
                    ));
                }
            };
        }
        if let Some(mode) = vars.get("MCP_AUTH_MODE") {
            config.auth_mode = match mode.to_ascii_lowercase().as_str() {
                "none" => AuthMode::None,
                "jwt" => AuthMode::Jwt,
                "api_key" | "api-key" | "apikey" => AuthMode::ApiKey,
                "both" => AuthMode::Both,
                _ => {
                    return Err(ConfigError::new(
                        "MCP_AUTH_MODE",
                        format!("`{mode}` is not one of none, jwt, api_key, both"),
                    ));
                }
            };
        }
        if config.auth_mode == AuthMode::None && config.environment.follows_production_rules() {
            return Err(ConfigError::new(
                "MCP_AUTH_MODE",
                format!(
                    "`none` is allowed only when MCP_ENVIRONMENT=development, not {}",
                    config.environment
                ),
            ));
        }
        config.allowed_ips = nets(vars, "MCP_ALLOWED_IPS")?;
        config.blocked_ips = nets(vars, "MCP_BLOCKED_IPS")?;
        config.trusted_proxies = nets(vars, "MCP_TRUSTED_PROXIES")?;
        config.trust_x_forwarded = boolean(vars, "MCP_TRUST_X_FORWARDED")?.unwrap_or(false);
        if let Some(depth) = vars.get("MCP_TRUSTED_PROXY_DEPTH") {
            config.trusted_proxy_depth = depth
                .parse()
                .ok()
                .filter(|d| (1..=MAX_PROXY_DEPTH).contains(d))
                .ok_or_else(|| {
                    ConfigError::new(
                        "MCP_TRUSTED_PROXY_DEPTH",
                        format!("`{depth}` is not a whole number from 1 to {MAX_PROXY_DEPTH}"),
                    )
                })?;
        }
        if config.trust_x_forwarded && config.trusted_proxies.is_empty() {
            return Err(ConfigError::new(
                "MCP_TRUST_X_FORWARDED",
                "is true but MCP_TRUSTED_PROXIES is empty: name the proxies whose X-Forwarded-For may be believed",
            ));
        }
        config.client_cert_required = boolean(vars, "MCP_CLIENT_CERT_REQUIRED")?.unwrap_or(false);
        if let Some(header) = vars.get("MCP_CLIENT_CERT_HEADER") {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(ConfigError::new(
                    "MCP_CLIENT_CERT_HEADER",
                    format!("`{header}` is not a valid HTTP header name"),
                ));
            }
            config.client_cert_header = header.to_owned();
        }
        if let Some(value) = vars.get("MCP_CLIENT_CERT_HEADER_VALUE") {
            if http::HeaderValue::from_str(value).is_err() {
                return Err(ConfigError::new(
                    "MCP_CLIENT_CERT_HEADER_VALUE",
                    "is not a valid HTTP header value",
                ));
            }
            config.client_cert_header_value = value.to_owned();
        }
        if config.client_cert_required && config.trusted_proxies.is_empty() {
            return Err(ConfigError::new(
                "MCP_CLIENT_CERT_REQUIRED",
                "is true but MCP_TRUSTED_PROXIES is empty: the certificate header is believed only from a trusted proxy",
            ));
        }
        config.max_body_bytes = body_limit(vars)?;
        if let Some(origins) = list(vars, "MCP_ALLOWED_ORIGINS")? {
            #[cfg(feature = "mcp")]
            for origin in &origins {
                crate::mcp::validate_allowed_origin(origin)
                    .map_err(|e| e.for_setting("MCP_ALLOWED_ORIGINS"))?;
            }
            config.allowed_origins = origins;
        }
        if let Some(hosts) = list(vars, "MCP_ALLOWED_HOSTS")? {
            #[cfg(feature = "mcp")]
            for host in &hosts {
                crate::mcp::validate_allowed_host(host)
                    .map_err(|e| e.for_setting("MCP_ALLOWED_HOSTS"))?;
            }
            config.allowed_hosts = hosts;
        }
        load_auth(vars, &mut config)?;
        load_rate_limit(vars, &mut config)?;
        load_gateway(vars, &mut config)?;
        load_operations(vars, &mut config)?;
        Ok(config)
    }
}

/// The error for an environment variable nobody reads, naming the known
/// one closest to it: `unknown setting MCP_ENV; did you mean
/// MCP_ENVIRONMENT?`. Settings-file keys use the same [`closest`].
fn unknown_setting<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> ConfigError {
    let message = match closest(name, known) {
        Some(near) => format!("unknown setting {name}; did you mean {near}?"),
        None => format!("unknown setting {name}"),
    };
    ConfigError::new(name.to_owned(), message)
}

/// The name of `known` closest to `name`: one that begins with the other
/// (an abbreviation such as `MCP_ENV`, or an extra suffix) first, then the
/// fewest single-character edits (case ignored).
pub(super) fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    known
        .into_iter()
        .map(|candidate| {
            let lower = candidate.to_ascii_lowercase();
            let related = lower.starts_with(&name) || name.starts_with(&lower);
            ((!related, edit_distance(&name, &lower)), candidate)
        })
        .min_by_key(|(score, _)| *score)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

fn path(vars: &Vars, name: &'static str) -> Result<Option<PathBuf>, ConfigError> {
    let Some(text) = vars.get(name) else {
        return Ok(None);
    };
    let path = PathBuf::from(text);
    if !path.is_file() {
        return Err(ConfigError::new(
            name,
            format!("`{text}` is not a readable file"),
        ));
    }
    Ok(Some(path))
}

fn url(name: &'static str, text: &str, production: bool) -> Result<String, ConfigError> {
    let ok = text.starts_with("https://")
        || (!production && text.starts_with("http://"))
        || (text.starts_with("http://") && is_loopback_url(text));
    let rest = text.split_once("://").map_or("", |(_, rest)| rest);
    if !ok || rest.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::new(
            name,
            format!(
                "`{}` is not an {}URL",
                redact_url(text),
                if production { "https " } else { "http(s) " }
            ),
        ));
    }
    Ok(text.to_owned())
}

fn is_loopback_url(text: &str) -> bool {
    let rest = text.trim_start_matches("http://");
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|h| rest.starts_with(h) && rest[h.len()..].starts_with([':', '/']) || rest == *h)
}

fn load_auth(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
    let production = config.environment.follows_production_rules();
    config.jwt_secret = vars.get("MCP_JWT_SECRET").map(str::to_owned);
    config.jwt_public_key_file = path(vars, "MCP_JWT_PUBLIC_KEY_FILE")?;
    config.jwks_file = path(vars, "MCP_JWKS_FILE")?;
    config.jwks_url = vars
        .get("MCP_JWKS_URL")
        .map(|u| url("MCP_JWKS_URL", u, production))
        .transpose()?;
    config.api_keys_file = path(vars, "MCP_API_KEYS_FILE")?;
    config.api_key_salt = vars.get("MCP_API_KEY_SALT").map(str::to_owned);
    config.api_keys = list(vars, "MCP_API_KEYS")?.unwrap_or_default();
    config.jwt_issuers = list(vars, "MCP_JWT_ISSUER")?.unwrap_or_default();
    config.jwt_audiences = list(vars, "MCP_JWT_AUDIENCE")?.unwrap_or_default();
    // Keys from an identity provider's URL verify only that provider's tokens.
    if production && config.jwks_url.is_some() && config.jwt_issuers.is_empty() {
        return Err(ConfigError::new(
            "MCP_JWT_ISSUER",
            "MCP_JWKS_URL needs MCP_JWT_ISSUER (the accepted `iss`) outside development",
        ));
    }
    config.ws_allow_query_auth = boolean(vars, "MCP_WS_ALLOW_QUERY_AUTH")?.unwrap_or(false);
    if let Some(text) = vars.get("MCP_JWT_LEEWAY_SECONDS") {
        config.jwt_leeway_seconds = text.parse().ok().filter(|s| *s <= 300).ok_or_else(|| {
            ConfigError::new(
                "MCP_JWT_LEEWAY_SECONDS",
                format!("`{text}` is not a whole number of seconds from 0 to 300"),
            )
        })?;
    }
    if let Some(text) = vars.get("MCP_RESOURCE_URL") {
        config.resource_url = Some(url("MCP_RESOURCE_URL", text, production)?);
    }
    for server in list(vars, "MCP_OAUTH_AUTHORIZATION_SERVERS")?.unwrap_or_default() {
        let server = url("MCP_OAUTH_AUTHORIZATION_SERVERS", &server, production)?;
        config.oauth_authorization_servers.push(server);
    }
    if let Some(text) = vars.get("MCP_TOOL_SCOPES") {
        config.tool_scopes = parse_tool_scopes(text)?;
    }

    // Which key source, and which algorithm.
    let sources = [
        ("MCP_JWT_SECRET", config.jwt_secret.is_some()),
        (
            "MCP_JWT_PUBLIC_KEY_FILE",
            config.jwt_public_key_file.is_some(),
        ),
        ("MCP_JWKS_FILE", config.jwks_file.is_some()),
        ("MCP_JWKS_URL", config.jwks_url.is_some()),
    ];
    let named: Vec<&str> = sources.iter().filter(|s| s.1).map(|s| s.0).collect();
    if named.len() > 1 {
        return Err(ConfigError::new(
            named[1],
            format!("set only one JWT key source, not {}", named.join(" and ")),
        ));
    }
    if let Some(alg) = vars.get("MCP_JWT_ALGORITHM") {
        let canonical = JWT_ALGORITHMS
            .iter()
            .find(|a| a.eq_ignore_ascii_case(alg))
            .ok_or_else(|| {
                ConfigError::new(
                    "MCP_JWT_ALGORITHM",
                    format!("`{alg}` is not one of {}", JWT_ALGORITHMS.join(", ")),
                )
            })?;
        config.jwt_algorithm = Some((*canonical).to_owned());
    }
    let hmac = config
        .jwt_algorithm
        .as_deref()
        .is_none_or(|a| a.starts_with("HS"));
    if config.jwt_secret.is_some() && !hmac {
        return Err(ConfigError::new(
            "MCP_JWT_ALGORITHM",
            "MCP_JWT_SECRET signs HS256, HS384 or HS512 tokens only",
        ));
    }
    if config.jwt_public_key_file.is_some() && hmac && config.jwt_algorithm.is_some() {
        return Err(ConfigError::new(
            "MCP_JWT_ALGORITHM",
            "a public key cannot verify HS* tokens (that is the algorithm-confusion attack)",
        ));
    }
    if config.auth_mode.jwt() {
        if let Some(secret) = &config.jwt_secret {
            if production && secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(ConfigError::new(
                    "MCP_JWT_SECRET",
                    format!(
                        "is {} bytes; at least {MIN_JWT_SECRET_BYTES} are required outside development",
                        secret.len()
                    ),
                ));
            }
        } else if named.is_empty() && production {
            return Err(ConfigError::new(
                "MCP_JWT_SECRET",
                "MCP_AUTH_MODE needs JWT keys: set MCP_JWT_SECRET, MCP_JWT_PUBLIC_KEY_FILE, MCP_JWKS_FILE or MCP_JWKS_URL",
            ));
        }
    }
    if let Some(salt) = config.api_key_salt.as_ref().filter(|s| s.len() < 16) {
        return Err(ConfigError::new(
            "MCP_API_KEY_SALT",
            format!("is {} bytes; at least 16 are required", salt.len()),
        ));
    }
    if config.api_keys_file.is_some() && config.api_key_salt.is_none() {
        return Err(ConfigError::new(
            "MCP_API_KEY_SALT",
            "MCP_API_KEYS_FILE holds salted digests: set the salt they were made with",
        ));
    }
    if config.auth_mode.api_key() {
        if config.api_keys.is_empty() && config.api_keys_file.is_none() {
            return Err(ConfigError::new(
                "MCP_API_KEYS",
                format!(
                    "MCP_AUTH_MODE={} needs MCP_API_KEYS or MCP_API_KEYS_FILE",
                    config.auth_mode
                ),
            ));
        }
        if production
            && config
                .api_keys
                .iter()
                .any(|k| k.chars().count() < MIN_API_KEY_CHARS)
        {
            return Err(ConfigError::new(
                "MCP_API_KEYS",
                format!(
                    "every key needs at least {MIN_API_KEY_CHARS} characters outside development"
                ),
            ));
        }
    }
    Ok(())
}

fn load_rate_limit(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
    config.rate_limit_enabled = boolean(vars, "MCP_RATE_LIMIT_ENABLED")?.unwrap_or(true);
    config.rate_limit_quota = rate_limit_quota(vars)?;
    if let Some(text) = vars.get("MCP_RATE_LIMIT_STORAGE") {
        config.rate_limit_storage = match text.to_ascii_lowercase().as_str() {
            "memory" => RateLimitStorage::Memory,
            "redis" => RateLimitStorage::Redis,
            _ => {
                return Err(ConfigError::new(
                    "MCP_RATE_LIMIT_STORAGE",
                    format!("`{text}` is not one of memory, redis"),
                ));
            }
        };
    }
    config.redis_url = vars.get("MCP_REDIS_URL").map(redis_url).transpose()?;
    if config.rate_limit_storage == RateLimitStorage::Redis && config.redis_url.is_none() {
        return Err(ConfigError::new(
            "MCP_REDIS_URL",
            "MCP_RATE_LIMIT_STORAGE=redis needs the server's URL (redis:// or rediss://)",
        ));
    }
    config.redis_ca_file = path(vars, "MCP_REDIS_CA_FILE")?;
    if config.redis_ca_file.is_some() && !config.redis_url.as_deref().is_some_and(is_rediss) {
        return Err(ca_file_without_tls());
    }
    if let Some(text) = vars.get("MCP_RATE_LIMIT_FAIL_MODE") {
        // `open` is allowed in every environment: it is the operator's
        // explicit choice, so it is only validated here.
        config.rate_limit_fail_mode = match text.to_ascii_lowercase().as_str() {
            "local" => RateLimitFailMode::Local,
            "closed" => RateLimitFailMode::Closed,
            "open" => RateLimitFailMode::Open,
            _ => {
                return Err(ConfigError::new(
                    "MCP_RATE_LIMIT_FAIL_MODE",
                    format!("`{text}` is not one of local, closed, open"),
                ));
            }
        };
    }
    if let Some(n) = whole(vars, "MCP_RATE_LIMIT_MAX_KEYS", 1, usize::MAX)? {
        config.rate_limit_max_keys = n;
    }
    if let Some(text) = vars.get("MCP_TOOL_RATE_LIMITS") {
        config.tool_rate_limits = tool_rate_limits(text)?;
    }
    if let Some(prefix) = whole(vars, "MCP_RATE_LIMIT_IPV6_PREFIX", 1, 128)? {
        config.rate_limit_ipv6_prefix = prefix;
    }
    if let Some(prefix) = vars.get("MCP_RATE_LIMIT_REDIS_PREFIX") {
        if prefix.len() > 128 || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new(
                "MCP_RATE_LIMIT_REDIS_PREFIX",
                "at most 128 characters, without spaces or control characters",
            ));
        }
        config.rate_limit_redis_prefix = prefix.to_owned();
    }
    Ok(())
}

fn load_gateway(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
    if let Some(url) = vars.get("MCP_DATABASE_URL") {
        let known = ["sqlite:", "postgres://", "postgresql://"];
        if !known.iter().any(|p| url.starts_with(p)) {
            return Err(ConfigError::new(
                "MCP_DATABASE_URL",
                "expected sqlite://path, sqlite::memory: or postgres://user:password@host/db",
            ));
        }
        config.database_url = url.to_owned();
    }
    if let Some(n) = whole(vars, "CIRCUIT_BREAKER_FAILURE_THRESHOLD", 1, 1_000_000)? {
        config.circuit_breaker_failure_threshold = n;
    }
    if let Some(ms) = whole(
        vars,
        "CIRCUIT_BREAKER_RESET_TIMEOUT",
        1,
        24 * 60 * 60 * 1000,
    )? {
        config.circuit_breaker_reset_timeout = Duration::from_millis(ms);
    }
    config.gateway_allow_private_upstreams = boolean(vars, "MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS")?
        .unwrap_or(!config.environment.follows_production_rules());
    if let Some(n) = whole(vars, "MCP_GATEWAY_MAX_CONNECTIONS", 1, 10_000)? {
        config.gateway_max_connections = n;
    }
    if let Some(ms) = whole(vars, "MCP_GATEWAY_TOOLS_CACHE_TTL", 0, 24 * 60 * 60 * 1000)? {
        config.gateway_tools_cache_ttl = Duration::from_millis(ms);
    }
    if let Some(n) = whole(vars, "MCP_GATEWAY_FANOUT", 1, 256)? {
        config.gateway_fanout = n;
    }
    if let Some(text) = vars.get("MCP_GATEWAY_CREDENTIAL_KEY") {
        let key = hex_array(text).ok_or_else(|| {
            ConfigError::new(
                "MCP_GATEWAY_CREDENTIAL_KEY",
                "expected 64 hex digits (a 32-byte key)",
            )
        })?;
        config.gateway_credential_key = Some(key);
    }
    if let Some(scope) = vars.raw("MCP_GATEWAY_SCOPE") {
        let scope = scope.trim();
        // RFC 6750 scope-token: it is named in `WWW-Authenticate`.
        let token = |b: u8| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e);
        if scope.is_empty() || !scope.bytes().all(token) {
            return Err(ConfigError::new(
                "MCP_GATEWAY_SCOPE",
                "expected one scope (printable ASCII without spaces, quotes or backslashes); \
                 unset, it is gateway:connections",
            ));
        }
        config.gateway_scope = scope.to_owned();
    }
    Ok(())
}

fn load_operations(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
    config.config_file = path(vars, "MCP_CONFIG_FILE")?;
    if let Some(level) = vars.get("MCP_LOG_LEVEL") {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "_:=,.-[]{}*\"".contains(c);
        if level.len() > 1024 || !level.chars().all(allowed) {
            return Err(ConfigError::new(
                "MCP_LOG_LEVEL",
                "is not a level (error, warn, info, debug, trace) or tracing directives such as `info,tower_warden=debug`",
            ));
        }
        config.log_level = Some(level.to_owned());
    }
    config.log_format = match vars.get("MCP_LOG_FORMAT").map(str::to_ascii_lowercase) {
        None if !config.environment.follows_production_rules() => LogFormat::Text,
        None => LogFormat::Json,
        Some(text) => match text.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            _ => {
                return Err(ConfigError::new(
                    "MCP_LOG_FORMAT",
                    format!("`{text}` is not one of text, json"),
                ));
            }
        },
    };
    if let Some(text) = vars.get("MCP_AUDIT_LOG_FILE") {
        let file = PathBuf::from(text);
        if file.is_dir() {
            return Err(ConfigError::new(
                "MCP_AUDIT_LOG_FILE",
                format!("`{text}` is a directory, not a file"),
            ));
        }
        config.audit_log_file = Some(file);
    }
    if let Some(list) = list(vars, "MCP_METRICS_ALLOWED_IPS")? {
        config.metrics_allowed_ips = parse_nets("MCP_METRICS_ALLOWED_IPS", list)?;
    }
    config.metrics_port = whole(vars, "MCP_METRICS_PORT", 1, u16::MAX)?;
    if let Some(origins) = list(vars, "MCP_CORS_ORIGINS")? {
        for origin in &origins {
            if origin == "*" {
                if config.environment.follows_production_rules() {
                    return Err(ConfigError::new(
                        "MCP_CORS_ORIGINS",
                        "`*` (any origin) is refused outside development: list the origins",
                    ));
                }
                if origins.len() > 1 {
                    return Err(ConfigError::new(
                        "MCP_CORS_ORIGINS",
                        "`*` cannot be combined with listed origins",
                    ));
                }
            } else if !is_origin(origin) {
                return Err(ConfigError::new(
                    "MCP_CORS_ORIGINS",
                    format!(
                        "`{}` is not an origin such as https://app.example.com",
                        redact_url(origin)
                    ),
                ));
            }
        }
        config.cors_origins = origins;
    }
    if let Some(seconds) = whole(vars, "MCP_REQUEST_TIMEOUT", 1, MAX_REQUEST_TIMEOUT_SECONDS)? {
        config.request_timeout = Duration::from_secs(seconds);
    }
    if let Some(role) = vars.get("MCP_ADMIN_ROLE") {
        if role.len() > 128 || role.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new(
                "MCP_ADMIN_ROLE",
                "is not a role name (at most 128 characters, no spaces)",
            ));
        }
        config.admin_role = role.to_owned();
        config.cross_namespace_role = Some(role.to_owned());
    }
    if let Some(seconds) = whole(vars, "MCP_WS_PING_INTERVAL", 1, 3600)? {
        config.ws_ping_interval = Duration::from_secs(seconds);
    }
    if let Some(seconds) = whole(vars, "MCP_WS_PING_TIMEOUT", 1, 3600)? {
        config.ws_ping_timeout = Duration::from_secs(seconds);
    }
    if let Some(text) = vars.get("MCP_SESSION_STORE") {
        config.session_store = match text.to_ascii_lowercase().as_str() {
            "memory" => SessionStorage::Memory,
            "redis" => SessionStorage::Redis,
            _ => {
                return Err(ConfigError::new(
                    "MCP_SESSION_STORE",
                    format!("`{text}` is not one of memory, redis"),
                ));
            }
        };
        if config.session_store == SessionStorage::Redis && config.redis_url.is_none() {
            return Err(ConfigError::new(
                "MCP_REDIS_URL",
                "MCP_SESSION_STORE=redis needs the server's URL (redis://)",
            ));
        }
    }
    Ok(())
}

/// `scheme://host[:port]` with nothing after it, as browsers send `Origin`.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !rest.ends_with(']') => (host, Some(port)),
        _ => (rest, None),
    };
    matches!(scheme, "http" | "https")
        && !host.is_empty()
        && (host.parse::<IpAddr>().is_ok()
            || is_host_name(host)
            || (host.starts_with('[')
                && host.ends_with(']')
                && host[1..host.len() - 1]
                    .parse::<std::net::Ipv6Addr>()
                    .is_ok()))
        && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

/// The longest `RATE_LIMIT_WINDOW_MS`: one day.
const MAX_RATE_LIMIT_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// `MCP_RATE_LIMIT_RPM` / `MCP_RATE_LIMIT_BURST`, or
/// `RATE_LIMIT_WINDOW_MS` / `RATE_LIMIT_MAX_REQUESTS` (both or neither).
fn rate_limit_quota(vars: &Vars) -> Result<RateLimitQuota, ConfigError> {
    let rpm = whole(vars, "MCP_RATE_LIMIT_RPM", 1, u32::MAX)?;
    let burst = whole(vars, "MCP_RATE_LIMIT_BURST", 1, u32::MAX)?;
    let window_ms = whole(vars, "RATE_LIMIT_WINDOW_MS", 1, MAX_RATE_LIMIT_WINDOW_MS)?;
    let max_requests = whole(vars, "RATE_LIMIT_MAX_REQUESTS", 1, u32::MAX)?;
    match (window_ms, max_requests) {
        (None, None) => {
            let requests = rpm.unwrap_or(DEFAULT_RATE_LIMIT_RPM);
            Ok(RateLimitQuota::PerMinute {
                requests,
                burst: burst.unwrap_or(requests),
            })
        }
        (Some(_), None) => Err(ConfigError::new(
            "RATE_LIMIT_WINDOW_MS",
            "needs RATE_LIMIT_MAX_REQUESTS too: set both or neither",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "RATE_LIMIT_MAX_REQUESTS",
            "needs RATE_LIMIT_WINDOW_MS too: set both or neither",
        )),
        (Some(ms), Some(max_requests)) => {
            let per_minute = [
                ("MCP_RATE_LIMIT_RPM", rpm.is_some()),
                ("MCP_RATE_LIMIT_BURST", burst.is_some()),
            ];
            if let Some((name, _)) = per_minute.iter().find(|(_, set)| *set) {
                return Err(ConfigError::new(
                    "RATE_LIMIT_WINDOW_MS",
                    format!(
                        "set either {name} or RATE_LIMIT_WINDOW_MS with RATE_LIMIT_MAX_REQUESTS, not both"
                    ),
                ));
            }
            let window = Duration::from_millis(ms);
            if window.as_nanos() < u128::from(max_requests) {
                return Err(ConfigError::new(
                    "RATE_LIMIT_MAX_REQUESTS",
                    format!(
                        "{max_requests} requests do not fit in {ms} ms (at most one a nanosecond)"
                    ),
                ));
            }
            Ok(RateLimitQuota::Window {
                window,
                max_requests,
            })
        }
    }
}

/// Whether `url` is a TLS (`rediss://`) Redis URL.
/// The `N` bytes that `text` spells in exactly `2 * N` hex digits (either
/// case, nothing else), or `None`.
pub(crate) fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        *byte = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

pub(crate) fn is_rediss(url: &str) -> bool {
    url.get(..9)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("rediss://"))
}

/// `MCP_REDIS_CA_FILE` given for a Redis URL without TLS.
pub(crate) fn ca_file_without_tls() -> ConfigError {
    ConfigError::new(
        "MCP_REDIS_CA_FILE",
        "is for TLS: MCP_REDIS_URL must be a rediss:// URL",
    )
}

/// `MCP_REDIS_URL`: `redis://` or `rediss://` with a host. The value may
/// hold a password, so errors never echo it.
fn redis_url(text: &str) -> Result<String, ConfigError> {
    let lower = text.to_ascii_lowercase();
    let rest = ["redis://", "rediss://"]
        .iter()
        .find(|scheme| lower.starts_with(*scheme))
        .map(|scheme| &text[scheme.len()..]);
    let host = rest
        .map(|rest| rest.rsplit_once('@').map_or(rest, |(_, host)| host))
        .map(|host| host.split(['/', '?', '#']).next().unwrap_or(""));
    let ok = host.is_some_and(|h| !h.is_empty() && !h.starts_with(':'))
        && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(ConfigError::new(
            "MCP_REDIS_URL",
            "is not a redis:// or rediss:// URL with a host (the value is not shown: it may hold a password)",
        ));
    }
    Ok(text.to_owned())
}

/// How a setting is shown by [`WardenConfig::redacted_json`] and `Debug`:
/// part of the setting's declaration, beside [`VARIABLES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Redaction {
    /// Shown as it is.
    Shown,
    /// A secret: never shown (a list shows how many entries it has).
    Secret,
    /// A URL (or a list of URLs): shown without the password of its user
    /// info, its query values or its fragment ([`redact_url`]).
    Url,
}

/// The [`Redaction`] of `variable`. A new secret or URL setting is
/// declared here.
fn redaction(variable: &str) -> Redaction {
    match variable {
        "MCP_JWT_SECRET"
        | "MCP_API_KEYS"
        | "MCP_API_KEY_SALT"
        | "MCP_CLIENT_CERT_HEADER_VALUE"
        | "MCP_GATEWAY_CREDENTIAL_KEY" => Redaction::Secret,
        "MCP_JWKS_URL"
        | "MCP_RESOURCE_URL"
        | "MCP_OAUTH_AUTHORIZATION_SERVERS"
        | "MCP_JWT_ISSUER"
        | "MCP_JWT_AUDIENCE"
        | "MCP_REDIS_URL"
        | "MCP_DATABASE_URL"
        | "MCP_ALLOWED_ORIGINS"
        | "MCP_CORS_ORIGINS" => Redaction::Url,
        _ => Redaction::Shown,
    }
}

/// Applies `redaction` to a setting's JSON value.
fn redact(redaction: Redaction, value: &mut serde_json::Value) {
    use serde_json::Value;
    match (redaction, &mut *value) {
        (Redaction::Shown, _) | (Redaction::Secret, Value::Null) => {}
        (Redaction::Secret, Value::Array(items)) => {
            *value = Value::from(format!("<{} redacted>", items.len()));
        }
        (Redaction::Secret, _) => *value = Value::from("<redacted>"),
        (Redaction::Url, Value::String(url)) => *url = redact_url(url),
        (Redaction::Url, Value::Array(items)) => {
            for item in items {
                redact(Redaction::Url, item);
            }
        }
        (Redaction::Url, _) => {}
    }
}

/// `url` with the password of its user info (all of the user info when it
/// has no `:` or looks odd, since some clients read a lone user info as
/// the password), every query value and the fragment replaced by
/// `<redacted>`. The user info ends at the last `@`, so a malformed URL is
/// redacted too much rather than too little.
pub(crate) fn redact_url(url: &str) -> String {
    const R: &str = "<redacted>";
    let (prefix, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((userinfo, rest)) => {
            let shown = match userinfo.split_once(':') {
                Some((user, _)) if !user.contains(['/', '?', '#']) => format!("{user}:{R}@"),
                _ => format!("{R}@"),
            };
            (shown, rest)
        }
        None => (String::new(), rest),
    };
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, _)) => (rest, format!("#{R}")),
        None => (rest, String::new()),
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) => format!("{key}={R}"),
                    None if pair.is_empty() => String::new(),
                    None => R.to_owned(),
                })
                .collect();
            (path, format!("?{}", pairs.join("&")))
        }
        None => (rest, String::new()),
    };
    format!("{prefix}{userinfo}{path}{query}{fragment}")
}

/// `MCP_TOOL_RATE_LIMITS`: `{"tool": requests_per_minute, ...}`.
fn tool_rate_limits(text: &str) -> Result<Vec<(String, u32)>, ConfigError> {
    let bad = |m: String| ConfigError::new("MCP_TOOL_RATE_LIMITS", m);
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad("must be a JSON object: tool name → requests a minute".into()))?;
    object
        .iter()
        .map(|(tool, limit)| {
            limit
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .map(|n| (tool.clone(), n))
                .ok_or_else(|| {
                    bad(format!(
                        "the limit of `{tool}` must be a whole number of requests a minute from 1 to {}",
                        u32::MAX
                    ))
                })
        })
        .collect()
}

/// A whole number from `min` to `max`, if set.
fn whole<T>(vars: &Vars, name: &'static str, min: T, max: T) -> Result<Option<T>, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    let Some(text) = vars.get(name) else {
        return Ok(None);
    };
    match text.parse::<T>() {
        Ok(n) if min <= n && n <= max => Ok(Some(n)),
        _ => Err(ConfigError::new(
            name,
            format!("`{text}` is not a whole number from {min} to {max}"),
        )),
    }
}

/// `MCP_TOOL_SCOPES`: `{"tool": ["scope", ...] | "scope scope", ...}`; the
/// key `"*"` is the requirement of every tool not listed. The one reader of
/// the setting: [`ToolPolicy::try_from_json`](crate::mcp::ToolPolicy::try_from_json)
/// reads it through this too.
///
/// # Errors
///
/// A [`ConfigError`] naming `MCP_TOOL_SCOPES` when the text is not a JSON
/// object of scopes.
pub fn parse_tool_scopes(text: &str) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    let bad = |m: String| ConfigError::new("MCP_TOOL_SCOPES", m);
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad("must be a JSON object: tool name → scopes".into()))?;
    let mut out = Vec::with_capacity(object.len());
    for (tool, scopes) in object {
        let scopes: Vec<String> = match scopes {
            serde_json::Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| bad(format!("the scopes of `{tool}` must be strings")))?,
            _ => {
                return Err(bad(format!(
                    "the scopes of `{tool}` must be an array of strings"
                )));
            }
        };
        out.push((tool.clone(), scopes));
    }
    Ok(out)
}

fn body_limit(vars: &Vars) -> Result<u64, ConfigError> {
    let parse = |name: &'static str, text: &str| {
        text.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ConfigError::new(name, format!("`{text}` is not a positive number of bytes"))
        })
    };
    let primary = vars
        .get("MCP_HTTP_MAX_BODY_BYTES")
        .map(|t| parse("MCP_HTTP_MAX_BODY_BYTES", t))
        .transpose()?;
    let alias = vars
        .get("MCP_MAX_REQUEST_SIZE")
        .map(|t| parse("MCP_MAX_REQUEST_SIZE", t))
        .transpose()?;
    match (primary, alias) {
        (Some(a), Some(b)) if a != b => Err(ConfigError::new(
            "MCP_HTTP_MAX_BODY_BYTES",
            format!("is {a} but its alias MCP_MAX_REQUEST_SIZE is {b}; set one of them"),
        )),
        (Some(n), _) | (None, Some(n)) => Ok(n),
        (None, None) => Ok(DEFAULT_MAX_BODY_BYTES),
    }
}

/// An RFC 1123 host name (letters, digits, `-`, dots).
fn is_host_name(text: &str) -> bool {
    text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn boolean(vars: &Vars, name: &'static str) -> Result<Option<bool>, ConfigError> {
    let Some(text) = vars.get(name) else {
        return Ok(None);
    };
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        _ => Err(ConfigError::new(
            name,
            format!("`{text}` is not a boolean (true/false, 1/0, yes/no, on/off)"),
        )),
    }
}

fn nets(vars: &Vars, name: &'static str) -> Result<Vec<IpNet>, ConfigError> {
    parse_nets(name, list(vars, name)?.unwrap_or_default())
}

/// The one parser of every list setting. Unset is `None` (the setting's
/// documented default); set but holding no entry (``, `,`, `[]`) is an
/// error, so an allow list can never be emptied into "everyone" by
/// accident.
fn list(vars: &Vars, name: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(text) = vars.raw(name) else {
        return Ok(None);
    };
    let items = parse_list(text).map_err(|message| ConfigError::new(name, message))?;
    if items.is_empty() {
        return Err(ConfigError::new(
            name,
            "is set but lists nothing: unset it to get its default, or name at least one entry",
        ));
    }
    Ok(Some(items))
}

/// `a, b` or a JSON array of strings `["a", "b"]`; blank entries are
/// dropped.
pub(crate) fn parse_list(text: &str) -> Result<Vec<String>, String> {
    let text = text.trim();
    let items = if text.starts_with('[') {
        parse_json_strings(text)?
    } else {
        text.split(',').map(str::to_owned).collect()
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

/// A JSON array whose elements are all strings.
fn parse_json_strings(text: &str) -> Result<Vec<String>, String> {
    const NOT_AN_ARRAY: &str = "starts with `[` but is not a JSON array of strings";
    let mut chars = text.chars().peekable();
    let mut out = Vec::new();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars
            .next_if(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
            .is_some()
        {}
    };
    if chars.next() != Some('[') {
        return Err(NOT_AN_ARRAY.to_owned());
    }
    skip_ws(&mut chars);
    if chars.next_if_eq(&']').is_none() {
        loop {
            skip_ws(&mut chars);
            if chars.next() != Some('"') {
                return Err(NOT_AN_ARRAY.to_owned());
            }
            out.push(json_string_rest(&mut chars).ok_or(NOT_AN_ARRAY)?);
            skip_ws(&mut chars);
            match chars.next() {
                Some(',') => continue,
                Some(']') => break,
                _ => return Err(NOT_AN_ARRAY.to_owned()),
            }
        }
    }
    skip_ws(&mut chars);
    if chars.next().is_some() {
        return Err(NOT_AN_ARRAY.to_owned());
    }
    Ok(out)
}

/// The rest of a JSON string after its opening quote, unescaped.
fn json_string_rest(chars: &mut impl Iterator<Item = char>) -> Option<String> {
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let high = hex4(chars)?;
                    let c = if (0xD800..0xDC00).contains(&high) {
                        if chars.next()? != '\\' || chars.next()? != 'u' {
                            return None;
                        }
                        let low = hex4(chars)?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return None;
                        }
                        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?
                    } else {
                        char::from_u32(high)?
                    };
                    out.push(c);
                }
                _ => return None,
            },
            c if (c as u32) < 0x20 => return None,
            c => out.push(c),
        }
    }
}

fn hex4(chars: &mut impl Iterator<Item = char>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<WardenConfig, ConfigError> {
        WardenConfig::from_vars(vars.iter().copied())
    }

    fn setting(vars: &[(&str, &str)]) -> String {
        load(vars).unwrap_err().setting().to_owned()
    }

    #[test]
    fn defaults() {
        let config = load(&[]).unwrap();
        assert_eq!(config, WardenConfig::default());
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 8000);
        assert_eq!(config.environment, Environment::Development);
        assert_eq!(config.auth_mode, AuthMode::Jwt);
        assert_eq!(config.jwt_leeway_seconds, 30);
        assert_eq!(config.max_body_bytes, 1_048_576);
        assert_eq!(config.allowed_hosts, ["localhost", "127.0.0.1", "[::1]"]);
        assert!(config.allowed_origins.is_empty());
        assert_eq!(config.client_cert_header, "X-SSL-Client-Verify");
        assert_eq!(config.client_cert_header_value, "SUCCESS");
        assert_eq!(config.trusted_proxy_depth, 1);
        assert!(config.rate_limit_enabled);
        assert_eq!(
            config.rate_limit_quota,
            RateLimitQuota::PerMinute {
                requests: 120,
                burst: 120
            }
        );
        assert_eq!(config.rate_limit_storage, RateLimitStorage::Memory);
        assert_eq!(config.redis_url, None);
        assert_eq!(config.rate_limit_fail_mode, RateLimitFailMode::Local);
        assert_eq!(config.rate_limit_max_keys, 100_000);
        assert!(config.tool_rate_limits.is_empty());
        assert_eq!(config.rate_limit_ipv6_prefix, 64);
    }

    #[test]
    fn lists_in_both_spellings() {
        assert_eq!(parse_list("a, b,,c ").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            parse_list(r#" ["a", " b" ,"c\"d"] "#).unwrap(),
            ["a", "b", "c\"d"]
        );
        assert_eq!(parse_list("[]").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_list(r#"["\u00e9\ud83d\ude00\/\n"]"#).unwrap(),
            ["é😀/"]
        );
        for bad in [
            "[",
            "[\"a\"",
            "[\"a\",]",
            "[a]",
            "[\"a\" \"b\"]",
            "[1]",
            "[\"a\"] x",
            "[\"\\x\"]",
            "[\"\\ud83d\"]",
            "[\"\\u12\"]",
        ] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
        let config = load(&[
            ("MCP_ALLOWED_IPS", r#"["10.0.0.0/8","192.0.2.7"]"#),
            ("MCP_BLOCKED_IPS", "10.1.0.0/16, 2001:db8::/32"),
        ])
        .unwrap();
        assert_eq!(config.allowed_ips.len(), 2);
        assert_eq!(config.blocked_ips[1].to_string(), "2001:db8::/32");
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        for (name, value) in [
            ("MCP_HOST", "not a host!"),
            ("MCP_PORT", "eighty"),
            ("MCP_PORT", "70000"),
            ("MCP_ENVIRONMENT", "qa"),
            ("MCP_AUTH_MODE", "magic"),
            ("MCP_ALLOWED_IPS", "10.0.0.0/33"),
            ("MCP_BLOCKED_IPS", "[\"nope\"]"),
            ("MCP_TRUSTED_PROXIES", "10.0.0.1,bogus"),
            ("MCP_TRUST_X_FORWARDED", "maybe"),
            ("MCP_CLIENT_CERT_REQUIRED", "2"),
            ("MCP_TRUSTED_PROXY_DEPTH", "0"),
            ("MCP_TRUSTED_PROXY_DEPTH", "-1"),
            ("MCP_CLIENT_CERT_HEADER", "bad header"),
            ("MCP_CLIENT_CERT_HEADER_VALUE", "bad\u{1}value"),
            ("MCP_HTTP_MAX_BODY_BYTES", "0"),
            ("MCP_HTTP_MAX_BODY_BYTES", "1MB"),
            ("MCP_MAX_REQUEST_SIZE", "-5"),
            ("MCP_ALLOWED_ORIGINS", "evil.example"),
            ("MCP_ALLOWED_HOSTS", "https://x.example"),
            ("MCP_ALLOWED_HOSTS", "[]"),
        ] {
            assert_eq!(setting(&[(name, value)]), name, "{name}={value}");
        }
    }

    #[test]
    fn unknown_mcp_variable_stops_start_up_naming_the_closest() {
        // `MCP_ENV=production` used to leave the server in development,
        // where `MCP_AUTH_MODE=none` is accepted.
        let error = load(&[("MCP_ENV", "production"), ("MCP_AUTH_MODE", "none")]).unwrap_err();
        assert_eq!(error.setting(), "MCP_ENV");
        assert_eq!(
            error.message(),
            "unknown setting MCP_ENV; did you mean MCP_ENVIRONMENT?"
        );
        for (typo, near) in [
            ("MCP_JWT_SECRT", "MCP_JWT_SECRET"),
            ("MCP_ALLOWED_IP", "MCP_ALLOWED_IPS"),
            ("MCP_RATELIMIT_RPM", "MCP_RATE_LIMIT_RPM"),
            ("mcp_port", "MCP_PORT"),
            ("MCP_REDIS_URI", "MCP_REDIS_URL"),
        ] {
            let error = load(&[(typo, "x")]);
            if typo.starts_with("MCP_") {
                let error = error.unwrap_err();
                assert_eq!(error.setting(), typo);
                assert!(
                    error.message().ends_with(&format!("did you mean {near}?")),
                    "{typo}: {error}"
                );
            } else {
                // Names are case-sensitive: only `MCP_` is the prefix.
                assert!(error.is_ok(), "{typo}");
            }
        }
        // Even an empty unknown variable is a typo worth stopping for.
        assert_eq!(setting(&[("MCP_ENV", "")]), "MCP_ENV");
        // Every known name, and other prefixes, still load.
        assert!(load(&[("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "3"), ("PATH", "/bin")]).is_ok());
        assert_eq!(closest("MCP_ENV", VARIABLES), Some("MCP_ENVIRONMENT"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    /// Every list setting, with a valid entry for it.
    const LISTS: [(&str, &str); 13] = [
        ("MCP_ALLOWED_IPS", "10.0.0.0/8"),
        ("MCP_BLOCKED_IPS", "10.0.0.0/8"),
        ("MCP_TRUSTED_PROXIES", "10.0.0.1"),
        ("MCP_METRICS_ALLOWED_IPS", "10.0.0.0/8"),
        ("MCP_ALLOWED_HOSTS", "mcp.example.com"),
        ("MCP_ALLOWED_ORIGINS", "https://app.example.com"),
        ("MCP_CORS_ORIGINS", "https://app.example.com"),
        ("MCP_JWT_ISSUER", "https://idp.example"),
        ("MCP_JWT_AUDIENCE", "https://mcp.example/mcp"),
        ("MCP_OAUTH_AUTHORIZATION_SERVERS", "https://idp.example"),
        ("MCP_API_KEYS", "api-key-0123456789abcdef"),
        ("MCP_ALLOWED_HOSTS", "[\"mcp.example.com\"]"),
        ("MCP_METRICS_ALLOWED_IPS", "[\"::1\"]"),
    ];

    #[test]
    fn a_list_set_to_nothing_stops_start_up() {
        // `MCP_METRICS_ALLOWED_IPS=[]` (or `,`) used to open `/metrics` to
        // every address: an empty allow set admits everyone.
        for (name, good) in LISTS {
            assert!(load(&[(name, good)]).is_ok(), "{name}={good}");
            for empty in ["", " ", ",", " , ,", "[]", "[ ]", "[\"\"]", "[\" \", \"\"]"] {
                let error = load(&[(name, empty)]).unwrap_err();
                assert_eq!(error.setting(), name, "{name}={empty:?}");
                assert!(error.message().contains("lists nothing"), "{error}");
            }
        }
        // Unset keeps the documented default: loopback for /metrics.
        assert_eq!(
            load(&[]).unwrap().metrics_allowed_ips,
            default_metrics_allowed_ips()
        );
    }

    #[cfg(feature = "config-file")]
    #[test]
    fn a_list_set_to_nothing_in_the_file_stops_start_up() {
        for (name, _) in LISTS {
            let key = key_of(name);
            for empty in ["[]", "\"\"", "\",\""] {
                let error = WardenConfig::from_toml(&format!("{key} = {empty}")).unwrap_err();
                assert_eq!(error.setting(), name, "{key} = {empty}");
            }
        }
    }

    #[test]
    fn staging_follows_every_production_rule() {
        let staging = ("MCP_ENVIRONMENT", "staging");
        let key = ("MCP_JWT_SECRET", SECRET);
        assert!(load(&[staging, key]).is_ok());
        // Each production-only refusal, one by one.
        for (vars, refused) in [
            (vec![("MCP_CORS_ORIGINS", "*")], "MCP_CORS_ORIGINS"),
            (vec![("MCP_AUTH_MODE", "none")], "MCP_AUTH_MODE"),
            (
                vec![("MCP_JWKS_URL", "http://idp.example/jwks")],
                "MCP_JWKS_URL",
            ),
            (
                vec![("MCP_RESOURCE_URL", "http://mcp.example/mcp")],
                "MCP_RESOURCE_URL",
            ),
            (
                vec![("MCP_AUTH_MODE", "both"), ("MCP_API_KEYS", "short-key")],
                "MCP_API_KEYS",
            ),
        ] {
            let mut all = vec![staging, key];
            all.extend(vars);
            assert_eq!(setting(&all), refused, "{all:?}");
        }
        assert_eq!(
            setting(&[staging, ("MCP_JWT_SECRET", "too-short")]),
            "MCP_JWT_SECRET"
        );
        assert_eq!(setting(&[staging]), "MCP_JWT_SECRET", "a key is required");
        // And each production default.
        let config = load(&[staging, key]).unwrap();
        assert!(!config.gateway_allow_private_upstreams);
        assert_eq!(config.log_format, LogFormat::Json);
        assert!(Environment::Staging.follows_production_rules());
        assert!(Environment::Production.follows_production_rules());
        assert!(!Environment::Development.follows_production_rules());
    }

    #[test]
    fn auth_mode_none_is_for_development_only() {
        for env in ["production", "PROD", "staging"] {
            assert_eq!(
                setting(&[("MCP_ENVIRONMENT", env), ("MCP_AUTH_MODE", "none")]),
                "MCP_AUTH_MODE"
            );
        }
        let config = load(&[("MCP_ENVIRONMENT", "dev"), ("MCP_AUTH_MODE", "NONE")]).unwrap();
        assert_eq!(config.environment, Environment::Development);
    }

    #[test]
    fn forwarded_headers_and_certificates_need_trusted_proxies() {
        assert_eq!(
            setting(&[("MCP_TRUST_X_FORWARDED", "true")]),
            "MCP_TRUST_X_FORWARDED"
        );
        assert_eq!(
            setting(&[("MCP_CLIENT_CERT_REQUIRED", "yes")]),
            "MCP_CLIENT_CERT_REQUIRED"
        );
        let config = load(&[
            ("MCP_TRUST_X_FORWARDED", "TRUE"),
            ("MCP_CLIENT_CERT_REQUIRED", "on"),
            ("MCP_TRUSTED_PROXIES", "10.0.0.2"),
            ("MCP_TRUSTED_PROXY_DEPTH", "2"),
            ("MCP_CLIENT_CERT_HEADER", "X-Client-Verified"),
            ("MCP_CLIENT_CERT_HEADER_VALUE", "ok"),
        ])
        .unwrap();
        assert!(config.trust_x_forwarded && config.client_cert_required);
        assert_eq!(config.trusted_proxy_depth, 2);
        assert_eq!(config.client_cert_header, "X-Client-Verified");
        assert!(!format!("{config:?}").contains("\"ok\""));
        let off = load(&[
            ("MCP_TRUST_X_FORWARDED", "0"),
            ("MCP_CLIENT_CERT_REQUIRED", "off"),
        ])
        .unwrap();
        assert!(!off.trust_x_forwarded && !off.client_cert_required);
    }

    #[test]
    fn body_limit_and_its_alias() {
        let n = |vars: &[(&str, &str)]| load(vars).unwrap().max_body_bytes;
        assert_eq!(n(&[("MCP_HTTP_MAX_BODY_BYTES", "2048")]), 2048);
        assert_eq!(n(&[("MCP_MAX_REQUEST_SIZE", "4096")]), 4096);
        assert_eq!(
            n(&[
                ("MCP_MAX_REQUEST_SIZE", "10"),
                ("MCP_HTTP_MAX_BODY_BYTES", "10")
            ]),
            10
        );
        assert_eq!(
            setting(&[
                ("MCP_MAX_REQUEST_SIZE", "10"),
                ("MCP_HTTP_MAX_BODY_BYTES", "20")
            ]),
            "MCP_HTTP_MAX_BODY_BYTES"
        );
    }

    #[test]
    fn empty_values_are_unset_and_later_pairs_win() {
        let config = load(&[("MCP_PORT", "1"), ("MCP_PORT", "9000"), ("MCP_HOST", " ")]).unwrap();
        assert_eq!(config.port, 9000);
        assert_eq!(config.host, "127.0.0.1");
        let config = load(&[
            ("MCP_HOST", "0.0.0.0"),
            ("MCP_ALLOWED_HOSTS", "mcp.example.com, [::1]:8000"),
            (
                "MCP_ALLOWED_ORIGINS",
                r#"["https://app.example.com","http://localhost:*"]"#,
            ),
            ("OTHER", "x"),
        ])
        .unwrap();
        assert_eq!(config.allowed_hosts, ["mcp.example.com", "[::1]:8000"]);
        assert_eq!(config.allowed_origins.len(), 2);
        assert_eq!(
            load(&[("MCP_HOST", "mcp-1.internal")]).unwrap().host,
            "mcp-1.internal"
        );
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn production_needs_strong_jwt_keys() {
        let prod = ("MCP_ENVIRONMENT", "production");
        assert_eq!(setting(&[prod]), "MCP_JWT_SECRET");
        let err = load(&[prod, ("MCP_JWT_SECRET", "too-short")]).unwrap_err();
        assert_eq!(err.setting(), "MCP_JWT_SECRET");
        assert!(
            !err.to_string().contains("too-short"),
            "never echo a secret"
        );
        let config = load(&[prod, ("MCP_JWT_SECRET", SECRET)]).unwrap();
        assert_eq!(config.auth_mode, AuthMode::Jwt);
        assert!(!format!("{config:?}").contains(SECRET));
        // Development accepts a short secret (the server warns).
        assert!(load(&[("MCP_JWT_SECRET", "short")]).is_ok());
    }

    #[test]
    fn jwt_settings_are_checked() {
        assert_eq!(
            setting(&[("MCP_JWT_ALGORITHM", "none")]),
            "MCP_JWT_ALGORITHM"
        );
        assert_eq!(
            setting(&[("MCP_JWT_SECRET", SECRET), ("MCP_JWT_ALGORITHM", "RS256")]),
            "MCP_JWT_ALGORITHM"
        );
        assert_eq!(
            setting(&[
                ("MCP_JWT_SECRET", SECRET),
                ("MCP_JWKS_URL", "https://idp/jwks")
            ]),
            "MCP_JWKS_URL"
        );
        assert_eq!(
            setting(&[("MCP_JWKS_FILE", "/nonexistent.json")]),
            "MCP_JWKS_FILE"
        );
        assert_eq!(setting(&[("MCP_JWKS_URL", "ftp://x")]), "MCP_JWKS_URL");
        assert_eq!(
            setting(&[
                ("MCP_ENVIRONMENT", "prod"),
                ("MCP_JWKS_URL", "http://idp.example/jwks")
            ]),
            "MCP_JWKS_URL",
            "plain http only in development or on loopback"
        );
        assert_eq!(
            setting(&[("MCP_JWT_LEEWAY_SECONDS", "9999")]),
            "MCP_JWT_LEEWAY_SECONDS"
        );
        let config = load(&[
            ("MCP_JWT_ALGORITHM", "es256"),
            ("MCP_JWT_ISSUER", "https://idp.example"),
            ("MCP_JWT_AUDIENCE", "https://mcp.example/mcp,api://mcp"),
            ("MCP_RESOURCE_URL", "https://mcp.example/mcp"),
            ("MCP_OAUTH_AUTHORIZATION_SERVERS", "https://idp.example"),
        ])
        .unwrap();
        assert_eq!(config.jwt_algorithm.as_deref(), Some("ES256"));
        assert_eq!(
            config.jwt_audiences,
            ["https://mcp.example/mcp", "api://mcp"]
        );
        assert_eq!(config.oauth_authorization_servers, ["https://idp.example"]);
    }

    #[test]
    fn api_key_settings_are_checked() {
        assert_eq!(setting(&[("MCP_AUTH_MODE", "api_key")]), "MCP_API_KEYS");
        assert_eq!(
            setting(&[
                ("MCP_ENVIRONMENT", "production"),
                ("MCP_AUTH_MODE", "api_key"),
                ("MCP_API_KEYS", "short,also-short")
            ]),
            "MCP_API_KEYS"
        );
        assert_eq!(
            setting(&[
                ("MCP_AUTH_MODE", "both"),
                ("MCP_API_KEYS", "k"),
                ("MCP_API_KEY_SALT", "salt")
            ]),
            "MCP_API_KEY_SALT"
        );
        let config = load(&[
            ("MCP_AUTH_MODE", "API_KEY"),
            ("MCP_API_KEYS", "dev-key-1,dev-key-2"),
        ])
        .unwrap();
        assert_eq!(config.auth_mode, AuthMode::ApiKey);
        assert_eq!(config.api_keys.len(), 2);
        assert!(!format!("{config:?}").contains("dev-key-1"));
    }

    #[test]
    fn tool_scopes_are_a_json_object_of_scopes() {
        let config = load(&[(
            "MCP_TOOL_SCOPES",
            r#"{"add":["tools:add"],"sleep":"tools:sleep admin"}"#,
        )])
        .unwrap();
        assert_eq!(
            config.tool_scopes,
            [
                ("add".to_owned(), vec!["tools:add".to_owned()]),
                (
                    "sleep".to_owned(),
                    vec!["tools:sleep".to_owned(), "admin".to_owned()]
                ),
            ]
        );
        for bad in ["[]", "{\"add\": 3}", "{\"add\": [1]}", "not json"] {
            assert_eq!(
                setting(&[("MCP_TOOL_SCOPES", bad)]),
                "MCP_TOOL_SCOPES",
                "{bad}"
            );
        }
    }

    #[test]
    fn the_gateway_scope_defaults_and_is_never_empty() {
        assert_eq!(load(&[]).unwrap().gateway_scope, "gateway:connections");
        let set = load(&[("MCP_GATEWAY_SCOPE", "gw:manage")]).unwrap();
        assert_eq!(set.gateway_scope, "gw:manage");
        for bad in ["", " ", "two scopes", "quo\"te"] {
            let error = load(&[("MCP_GATEWAY_SCOPE", bad)]).unwrap_err();
            assert_eq!(error.setting(), "MCP_GATEWAY_SCOPE", "{bad:?}");
        }
    }

    #[test]
    fn rate_limit_settings_are_read() {
        let config = load(&[
            ("MCP_RATE_LIMIT_ENABLED", "off"),
            ("MCP_RATE_LIMIT_STORAGE", "Redis"),
            ("MCP_REDIS_URL", "rediss://cache.internal:6380/2"),
            ("MCP_RATE_LIMIT_FAIL_MODE", "CLOSED"),
            ("MCP_RATE_LIMIT_MAX_KEYS", "5000"),
            ("MCP_TOOL_RATE_LIMITS", r#"{"search": 30, "add": 600}"#),
            ("MCP_RATE_LIMIT_IPV6_PREFIX", "56"),
            ("MCP_RATE_LIMIT_REDIS_PREFIX", "app-a:rl:"),
        ])
        .unwrap();
        assert_eq!(config.rate_limit_redis_prefix, "app-a:rl:");
        let gateway = load(&[
            ("MCP_DATABASE_URL", "postgres://gw:hunter2@db.internal/mcp"),
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "3"),
            ("CIRCUIT_BREAKER_RESET_TIMEOUT", "2500"),
        ])
        .unwrap();
        assert_eq!(
            gateway.database_url,
            "postgres://gw:hunter2@db.internal/mcp"
        );
        assert_eq!(gateway.circuit_breaker_failure_threshold, 3);
        assert!(
            gateway.gateway_allow_private_upstreams,
            "development default"
        );
        assert_eq!(
            gateway.circuit_breaker_reset_timeout,
            Duration::from_millis(2500)
        );
        assert!(!format!("{gateway:?}").contains("hunter2"));
        let defaults = load(&[]).unwrap();
        assert_eq!(defaults.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(defaults.circuit_breaker_failure_threshold, 5);
        assert_eq!(
            defaults.circuit_breaker_reset_timeout,
            Duration::from_secs(60)
        );
        assert!(!config.rate_limit_enabled);
        assert_eq!(config.rate_limit_storage, RateLimitStorage::Redis);
        assert_eq!(
            config.redis_url.as_deref(),
            Some("rediss://cache.internal:6380/2")
        );
        assert_eq!(config.rate_limit_fail_mode, RateLimitFailMode::Closed);
        assert_eq!(config.rate_limit_max_keys, 5000);
        assert_eq!(
            config.tool_rate_limits,
            [("add".to_owned(), 600), ("search".to_owned(), 30)]
        );
        assert_eq!(config.rate_limit_ipv6_prefix, 56);
        // `open` is allowed outside development: the operator asked for it.
        let open = load(&[
            ("MCP_ENVIRONMENT", "production"),
            ("MCP_JWT_SECRET", SECRET),
            ("MCP_RATE_LIMIT_FAIL_MODE", "open"),
        ])
        .unwrap();
        assert_eq!(open.rate_limit_fail_mode, RateLimitFailMode::Open);
        // A URL without Redis storage is kept (and still checked).
        assert!(
            load(&[("MCP_REDIS_URL", "redis://localhost")])
                .unwrap()
                .redis_url
                .is_some()
        );
    }

    #[test]
    fn rate_limit_quota_in_both_forms() {
        let quota = |vars: &[(&str, &str)]| load(vars).unwrap().rate_limit_quota;
        assert_eq!(
            quota(&[("MCP_RATE_LIMIT_RPM", "300")]),
            RateLimitQuota::PerMinute {
                requests: 300,
                burst: 300
            },
            "the burst defaults to the rate"
        );
        assert_eq!(
            quota(&[("MCP_RATE_LIMIT_RPM", "60"), ("MCP_RATE_LIMIT_BURST", "10")]),
            RateLimitQuota::PerMinute {
                requests: 60,
                burst: 10
            }
        );
        assert_eq!(
            quota(&[("MCP_RATE_LIMIT_BURST", "5")]),
            RateLimitQuota::PerMinute {
                requests: 120,
                burst: 5
            }
        );
        assert_eq!(
            quota(&[
                ("RATE_LIMIT_WINDOW_MS", "900000"),
                ("RATE_LIMIT_MAX_REQUESTS", "100")
            ]),
            RateLimitQuota::Window {
                window: Duration::from_secs(900),
                max_requests: 100
            }
        );
        // Both forms: the error names the second.
        for first in ["MCP_RATE_LIMIT_RPM", "MCP_RATE_LIMIT_BURST"] {
            assert_eq!(
                setting(&[
                    (first, "60"),
                    ("RATE_LIMIT_WINDOW_MS", "1000"),
                    ("RATE_LIMIT_MAX_REQUESTS", "10")
                ]),
                "RATE_LIMIT_WINDOW_MS"
            );
        }
        // The window form needs both of its variables.
        assert_eq!(
            setting(&[("RATE_LIMIT_WINDOW_MS", "1000")]),
            "RATE_LIMIT_WINDOW_MS"
        );
        assert_eq!(
            setting(&[("RATE_LIMIT_MAX_REQUESTS", "10")]),
            "RATE_LIMIT_MAX_REQUESTS"
        );
        // More requests than nanoseconds in the window.
        assert_eq!(
            setting(&[
                ("RATE_LIMIT_WINDOW_MS", "1"),
                ("RATE_LIMIT_MAX_REQUESTS", "1000001")
            ]),
            "RATE_LIMIT_MAX_REQUESTS"
        );
        assert!(
            load(&[
                ("RATE_LIMIT_WINDOW_MS", "1"),
                ("RATE_LIMIT_MAX_REQUESTS", "1000000")
            ])
            .is_ok()
        );
    }

    #[cfg(feature = "rate-limit")]
    #[test]
    fn every_accepted_quota_makes_a_store_quota() {
        use crate::rate_limit::Quota;
        for vars in [
            &[("MCP_RATE_LIMIT_RPM", "4294967295")][..],
            &[
                ("RATE_LIMIT_WINDOW_MS", "1"),
                ("RATE_LIMIT_MAX_REQUESTS", "1000000"),
            ],
            &[
                ("RATE_LIMIT_WINDOW_MS", "86400000"),
                ("RATE_LIMIT_MAX_REQUESTS", "4294967295"),
            ],
        ] {
            let made = match load(vars).unwrap().rate_limit_quota {
                RateLimitQuota::PerMinute { requests, burst } => {
                    Quota::per_minute(requests).and_then(|q| q.with_burst(burst))
                }
                RateLimitQuota::Window {
                    window,
                    max_requests,
                } => Quota::per_window(window, max_requests),
            };
            assert!(made.is_ok(), "{vars:?}");
        }
    }

    #[test]
    fn every_bad_rate_limit_value_names_its_variable() {
        for (name, value) in [
            ("MCP_RATE_LIMIT_ENABLED", "sometimes"),
            ("MCP_RATE_LIMIT_RPM", "0"),
            ("MCP_RATE_LIMIT_RPM", "-1"),
            ("MCP_RATE_LIMIT_RPM", "1.5"),
            ("MCP_RATE_LIMIT_RPM", "4294967296"),
            ("MCP_RATE_LIMIT_BURST", "0"),
            ("MCP_RATE_LIMIT_BURST", "many"),
            ("RATE_LIMIT_WINDOW_MS", "0"),
            ("RATE_LIMIT_WINDOW_MS", "86400001"),
            ("RATE_LIMIT_MAX_REQUESTS", "0"),
            ("MCP_RATE_LIMIT_STORAGE", "postgres"),
            ("MCP_RATE_LIMIT_STORAGE", "redis"),
            ("MCP_REDIS_URL", "http://cache:6379"),
            ("MCP_REDIS_URL", "cache:6379"),
            ("MCP_REDIS_URL", "redis://"),
            ("MCP_REDIS_URL", "redis://:pw@/0"),
            ("MCP_REDIS_URL", "redis://cache 6379"),
            ("MCP_REDIS_CA_FILE", "/nonexistent/ca.pem"),
            // A readable file, but no rediss:// URL to use it with.
            ("MCP_REDIS_CA_FILE", "Cargo.toml"),
            ("MCP_RATE_LIMIT_FAIL_MODE", "sometimes"),
            ("MCP_RATE_LIMIT_MAX_KEYS", "0"),
            ("MCP_RATE_LIMIT_MAX_KEYS", "lots"),
            ("MCP_TOOL_RATE_LIMITS", "not json"),
            ("MCP_TOOL_RATE_LIMITS", "[30]"),
            ("MCP_TOOL_RATE_LIMITS", r#"{"search": 0}"#),
            ("MCP_TOOL_RATE_LIMITS", r#"{"search": -3}"#),
            ("MCP_TOOL_RATE_LIMITS", r#"{"search": 1.5}"#),
            ("MCP_TOOL_RATE_LIMITS", r#"{"search": "30"}"#),
            ("MCP_TOOL_RATE_LIMITS", r#"{"search": 4294967296}"#),
            ("MCP_RATE_LIMIT_IPV6_PREFIX", "0"),
            ("MCP_RATE_LIMIT_IPV6_PREFIX", "129"),
            ("MCP_RATE_LIMIT_IPV6_PREFIX", "/64"),
            ("MCP_RATE_LIMIT_REDIS_PREFIX", "has space"),
            ("MCP_DATABASE_URL", "mysql://db/x"),
            ("MCP_DATABASE_URL", "./data/mcp.db"),
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "0"),
            ("CIRCUIT_BREAKER_RESET_TIMEOUT", "0"),
            ("CIRCUIT_BREAKER_RESET_TIMEOUT", "1s"),
        ] {
            let paired = if name == "RATE_LIMIT_WINDOW_MS" {
                ("RATE_LIMIT_MAX_REQUESTS", "10")
            } else if name == "RATE_LIMIT_MAX_REQUESTS" {
                ("RATE_LIMIT_WINDOW_MS", "1000")
            } else {
                ("MCP_HOST", "127.0.0.1")
            };
            let expected = if (name, value) == ("MCP_RATE_LIMIT_STORAGE", "redis") {
                "MCP_REDIS_URL"
            } else {
                name
            };
            assert_eq!(
                setting(&[paired, (name, value)]),
                expected,
                "{name}={value}"
            );
        }
    }

    #[test]
    fn redis_passwords_are_never_printed() {
        let password = "hunter2-s3cret";
        for (url, shown) in [
            (
                format!("redis://app:{password}@cache:6379/0"),
                "redis://app:<redacted>@cache:6379/0",
            ),
            (
                format!("rediss://:{password}@cache"),
                "rediss://:<redacted>@cache",
            ),
            (
                format!("redis://{password}@cache"),
                "redis://<redacted>@cache",
            ),
            (
                format!("redis://app:{password}/with@slash@cache:6379"),
                "redis://app:<redacted>@cache:6379",
            ),
        ] {
            let config =
                load(&[("MCP_RATE_LIMIT_STORAGE", "redis"), ("MCP_REDIS_URL", &url)]).unwrap();
            assert_eq!(config.redis_url.as_deref(), Some(url.as_str()));
            let debug = format!("{config:?}");
            assert!(!debug.contains(password), "{debug}");
            assert!(debug.contains(shown), "{debug}");
        }
        let plain = load(&[("MCP_REDIS_URL", "redis://cache:6379")]).unwrap();
        assert!(format!("{plain:?}").contains("redis://cache:6379"));
        let err = load(&[("MCP_REDIS_URL", &format!("http://:{password}@cache"))]).unwrap_err();
        assert_eq!(err.setting(), "MCP_REDIS_URL");
        assert!(!err.to_string().contains(password), "{err}");
    }

    #[test]
    fn operations_settings() {
        let config = load(&[
            ("MCP_LOG_LEVEL", "info,tower_warden=debug"),
            ("MCP_LOG_FORMAT", "JSON"),
            ("MCP_METRICS_ALLOWED_IPS", "10.0.0.0/8"),
            ("MCP_METRICS_PORT", "9100"),
            (
                "MCP_CORS_ORIGINS",
                "https://app.example.com, http://localhost:6274",
            ),
            ("MCP_REQUEST_TIMEOUT", "5"),
            ("MCP_ADMIN_ROLE", "ops"),
        ])
        .unwrap();
        assert_eq!(config.log_level.as_deref(), Some("info,tower_warden=debug"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.metrics_allowed_ips,
            ["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
        assert_eq!(config.metrics_port, Some(9100));
        assert_eq!(
            config.cors_origins,
            ["https://app.example.com", "http://localhost:6274"]
        );
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.admin_role, "ops");

        let defaults = load(&[]).unwrap();
        assert_eq!(defaults.log_format, LogFormat::Text);
        assert_eq!(defaults.request_timeout, Duration::from_secs(30));
        let loopback = |ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            defaults
                .metrics_allowed_ips
                .iter()
                .any(|net| net.contains(&ip))
        };
        assert!(loopback("127.0.0.1") && loopback("127.9.9.9") && loopback("::1"));
        assert!(!loopback("10.0.0.1") && !loopback("::2"));
        // Production logs JSON unless told otherwise.
        let production = load(&[
            ("MCP_ENVIRONMENT", "production"),
            ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .unwrap();
        assert_eq!(production.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_operations_settings_name_their_variable() {
        for (name, value) in [
            ("MCP_LOG_FORMAT", "yaml"),
            ("MCP_LOG_LEVEL", "info; rm -rf /"),
            ("MCP_METRICS_ALLOWED_IPS", "10.0.0.0/33"),
            ("MCP_METRICS_PORT", "0"),
            ("MCP_METRICS_PORT", "70000"),
            ("MCP_CORS_ORIGINS", "https://app.example.com/path"),
            ("MCP_CORS_ORIGINS", "app.example.com"),
            ("MCP_CORS_ORIGINS", "*,https://a.example"),
            ("MCP_REQUEST_TIMEOUT", "0"),
            ("MCP_REQUEST_TIMEOUT", "1.5"),
            ("MCP_ADMIN_ROLE", "a b"),
            ("MCP_AUDIT_LOG_FILE", "/"),
            ("MCP_WS_PING_INTERVAL", "0"),
            ("MCP_WS_PING_TIMEOUT", "3601"),
            ("MCP_SESSION_STORE", "postgres"),
        ] {
            assert_eq!(setting(&[(name, value)]), name, "{name}={value}");
        }
        // `*` is a development convenience only.
        assert!(load(&[("MCP_CORS_ORIGINS", "*")]).is_ok());
        let error = load(&[
            ("MCP_ENVIRONMENT", "production"),
            ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("MCP_CORS_ORIGINS", "*"),
        ])
        .unwrap_err();
        assert_eq!(error.setting(), "MCP_CORS_ORIGINS");
    }

    #[test]
    fn redacted_json_hides_every_secret() {
        let config = load(&[
            ("MCP_JWT_SECRET", "jwt-secret-0123456789abcdef-0123456"),
            ("MCP_API_KEYS", "api-key-0123456789abcdef"),
            ("MCP_API_KEY_SALT", "salt-0123456789abcdef"),
            ("MCP_CLIENT_CERT_HEADER_VALUE", "proxy-shared-value"),
            (
                "MCP_REDIS_URL",
                "redis://user:redis-password@127.0.0.1:6379",
            ),
            (
                "MCP_DATABASE_URL",
                "postgres://app:db-password@127.0.0.1/mcp",
            ),
        ])
        .unwrap();
        let text = config.redacted_json().to_string();
        for secret in [
            "jwt-secret",
            "api-key-0123",
            "salt-0123",
            "proxy-shared-value",
            "redis-password",
            "db-password",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let json = config.redacted_json();
        assert_eq!(json["jwt_secret"], "<redacted>");
        assert_eq!(json["port"], 8000);
        assert_eq!(json["rate_limit_quota"]["requests_per_minute"], 120);
        assert_eq!(json["redis_url"], "redis://user:<redacted>@127.0.0.1:6379");
        // Every key is a settings-file key, so the page reads like the file.
        #[cfg(feature = "config-file")]
        for key in json.as_object().unwrap().keys() {
            let known = VARIABLES.iter().any(|v| key_of(v) == *key) || key == "rate_limit_quota";
            assert!(known, "{key} is not a settings-file key");
        }
    }

    #[test]
    fn url_credentials_never_show() {
        // `/status` used to print `?password=` and `?token=` values, and
        // the user info of every URL setting but two.
        let leaks = ["s3cret-pw", "s3cret-tok", "s3cret-key", "s3cret-frag"];
        let with = |base: &str| {
            format!("{base}?password=s3cret-pw&token=s3cret-tok&key=s3cret-key#s3cret-frag")
        };
        let https = with("https://user:s3cret-pw@idp.example/jwks");
        let redis = with("redis://user:s3cret-pw@127.0.0.1:6379/0");
        let postgres = with("postgres://app:s3cret-pw@127.0.0.1/mcp");
        let config = load(&[
            ("MCP_JWKS_URL", &https),
            ("MCP_RESOURCE_URL", &https),
            ("MCP_OAUTH_AUTHORIZATION_SERVERS", &https),
            ("MCP_JWT_ISSUER", &https),
            ("MCP_JWT_AUDIENCE", &https),
            ("MCP_REDIS_URL", &redis),
            ("MCP_DATABASE_URL", &postgres),
        ])
        .unwrap();
        let json = config.redacted_json();
        let debug = format!("{config:?}");
        for text in [json.to_string(), debug] {
            for leak in leaks {
                assert!(!text.contains(leak), "{leak} leaked: {text}");
            }
        }
        assert_eq!(
            json["jwks_url"],
            "https://user:<redacted>@idp.example/jwks?password=<redacted>&token=<redacted>&key=<redacted>#<redacted>"
        );
        assert_eq!(
            json["database_url"],
            "postgres://app:<redacted>@127.0.0.1/mcp?password=<redacted>&token=<redacted>&key=<redacted>#<redacted>"
        );
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(
            redact_url("redis://h/?password=a@b"),
            "redis://<redacted>@b"
        );
        // Nor in the error of a URL that is refused.
        for (name, bad) in [
            ("MCP_JWKS_URL", with("ftp://user:s3cret-pw@idp.example/")),
            (
                "MCP_RESOURCE_URL",
                with("ftp://user:s3cret-pw@idp.example/"),
            ),
            (
                "MCP_OAUTH_AUTHORIZATION_SERVERS",
                with("ftp://user:s3cret-pw@idp.example/"),
            ),
            ("MCP_REDIS_URL", with("http://user:s3cret-pw@cache/")),
            ("MCP_DATABASE_URL", with("mysql://user:s3cret-pw@db/")),
            (
                "MCP_CORS_ORIGINS",
                with("https://user:s3cret-pw@app.example"),
            ),
        ] {
            let error = load(&[(name, &bad)]).unwrap_err();
            assert_eq!(error.setting(), name);
            for leak in leaks {
                assert!(!error.to_string().contains(leak), "{leak} leaked: {error}");
            }
        }
    }

    #[cfg(feature = "config-file")]
    mod settings_file {
        use super::*;

        fn write(text: &str) -> (PathBuf, impl Drop) {
            struct Remove(PathBuf);
            impl Drop for Remove {
                fn drop(&mut self) {
                    let _ = std::fs::remove_file(&self.0);
                }
            }
            static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "tower-warden-config-{}-{n}.toml",
                std::process::id()
            ));
            std::fs::write(&path, text).unwrap();
            (path.clone(), Remove(path))
        }

        const FILE: &str = r#"
port = 9000
allowed_ips = ["10.0.0.0/8", "192.0.2.7"]
trust_x_forwarded = true
trusted_proxies = ["10.0.0.1"]
circuit_breaker_failure_threshold = 3

[rate_limit]
rpm = 600
burst = 50

[tool_scopes]
delete_record = ["records:write"]

[tool_rate_limits]
search = 30
"#;

        #[test]
        fn file_settings_and_env_over_file_over_defaults() {
            let (path, _guard) = write(FILE);
            let path = path.to_str().unwrap();
            let config = load(&[("MCP_CONFIG_FILE", path), ("MCP_PORT", "9001")]).unwrap();
            // The environment wins over the file...
            assert_eq!(config.port, 9001);
            // ...the file over the defaults, in nested tables too.
            assert_eq!(config.allowed_ips.len(), 2);
            assert!(config.trust_x_forwarded);
            assert_eq!(config.circuit_breaker_failure_threshold, 3);
            assert_eq!(
                config.rate_limit_quota,
                RateLimitQuota::PerMinute {
                    requests: 600,
                    burst: 50
                }
            );
            assert_eq!(
                config.tool_scopes,
                [("delete_record".to_owned(), vec!["records:write".to_owned()])]
            );
            assert_eq!(config.tool_rate_limits, [("search".to_owned(), 30)]);
            assert_eq!(
                config.config_file.as_deref(),
                Some(std::path::Path::new(path))
            );
            // What the file leaves out keeps its default.
            assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
            // An empty variable counts as unset, so the file's value stands.
            let config = load(&[("MCP_CONFIG_FILE", path), ("MCP_PORT", "")]).unwrap();
            assert_eq!(config.port, 9000);
        }

        #[test]
        fn toml_and_serde_read_the_same_keys() {
            let from_toml = WardenConfig::from_toml(FILE).unwrap();
            let from_serde: WardenConfig = toml::from_str(FILE).unwrap();
            assert_eq!(from_toml, from_serde);
            assert_eq!(from_toml.port, 9000);
            // Upper-case variable names work too (a copied env file).
            let config = WardenConfig::from_toml(
                "MCP_PORT = 9002\nRATE_LIMIT_WINDOW_MS = 1000\nRATE_LIMIT_MAX_REQUESTS = 5",
            )
            .unwrap();
            assert_eq!(config.port, 9002);
        }

        #[test]
        fn unknown_key_is_an_error_naming_it() {
            let error = WardenConfig::from_toml("jwt_secrt = \"x\"").unwrap_err();
            assert_eq!(error.setting(), "jwt_secrt");
            assert!(
                error.message().contains("did you mean jwt_secret?"),
                "{error}"
            );
            let error = WardenConfig::from_toml("[rate_limit]\nrpmm = 3").unwrap_err();
            assert_eq!(error.setting(), "rate_limit.rpmm");
            assert!(
                error.message().contains("did you mean rate_limit_rpm?"),
                "{error}"
            );
            assert!(!error.message().contains('3'), "{error}");
            // A file cannot name another file.
            assert_eq!(
                WardenConfig::from_toml("config_file = \"/etc/x\"")
                    .unwrap_err()
                    .setting(),
                "config_file"
            );
            // The same setting twice (flat and nested) is refused.
            let error =
                WardenConfig::from_toml("rate_limit_rpm = 1\n[rate_limit]\nrpm = 2").unwrap_err();
            assert_eq!(error.setting(), "MCP_RATE_LIMIT_RPM");
        }

        #[test]
        fn an_empty_or_odd_key_is_named_quoted() {
            // Found by the `settings` fuzz target: `"" = 1` was refused as
            // "unknown setting  in the TOML text", naming nothing.
            for (text, shown) in [
                ("\"\" = 1", "\"\""),
                ("\"a b\" = 1", "\"a b\""),
                ("[rate_limit]\n\"\" = 1", "rate_limit.\"\""),
            ] {
                let error = WardenConfig::from_toml(text).unwrap_err();
                assert_eq!(error.setting(), shown, "{text}");
                assert!(
                    error
                        .message()
                        .starts_with(&format!("unknown setting {shown} in the TOML text")),
                    "{error}"
                );
            }
        }

        #[test]
        fn bad_value_names_variable_and_file_key() {
            let (path, _guard) = write("[rate_limit]\nrpm = 0\n");
            let error = load(&[("MCP_CONFIG_FILE", path.to_str().unwrap())]).unwrap_err();
            assert_eq!(error.setting(), "MCP_RATE_LIMIT_RPM");
            assert!(error.message().contains("rate_limit.rpm in "), "{error}");
            assert!(error.message().contains(path.to_str().unwrap()), "{error}");
            // The same bad value from the environment says nothing of a file.
            let error = load(&[("MCP_RATE_LIMIT_RPM", "0")]).unwrap_err();
            assert!(!error.message().contains(" in "), "{error}");
            // Wrong types: a float where a whole number belongs.
            let error = WardenConfig::from_toml("port = 80.5").unwrap_err();
            assert_eq!(error.setting(), "MCP_PORT");
        }

        #[test]
        fn syntax_error_never_echoes_the_line() {
            let error =
                WardenConfig::from_toml("port = 1\njwt_secret = \"top-secret-value\n").unwrap_err();
            assert_eq!(error.setting(), "MCP_CONFIG_FILE");
            assert!(error.message().contains("line 2"), "{error}");
            assert!(!error.to_string().contains("top-secret"), "{error}");
        }

        #[test]
        fn missing_file_is_an_error() {
            let error = load(&[("MCP_CONFIG_FILE", "/nonexistent/mcp.toml")]).unwrap_err();
            assert_eq!(error.setting(), "MCP_CONFIG_FILE");
            assert!(error.message().contains("/nonexistent/mcp.toml"), "{error}");
        }

        #[test]
        fn every_variable_has_a_distinct_file_key() {
            let mut keys: Vec<String> = VARIABLES.iter().map(|v| key_of(v)).collect();
            keys.sort();
            let before = keys.len();
            keys.dedup();
            assert_eq!(before, keys.len());
        }
    }
}
