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
//! | `MCP_DPOP` | `allowed` | DPoP-bound tokens (RFC 9449): `off`, `allowed` or `required` (only DPoP; not with API keys). A token bound to a key or a certificate is never accepted as a plain bearer token |
//! | `MCP_DPOP_MAX_AGE_SECONDS` | `60` | how old a DPoP proof's `iat` may be (1–300); its `jti` is remembered that long |
//! | `MCP_API_KEYS` | — | API keys, each granted every scope; at least 16 characters outside `development` |
//! | `MCP_API_KEYS_FILE` | — | one JSON object per line: `id`, `digest`, `namespace`, `roles`, `scopes` |
//! | `MCP_API_KEY_SALT` | random per start | salt of the key digests (at least 16 bytes; required with `MCP_API_KEYS_FILE`) |
//! | `MCP_TOOL_SCOPES` | — | JSON object: tool → scopes needed to call it (and to see it in `tools/list`) |
//! | `MCP_RESOURCE_URL` | `http://<host>:<port>/mcp` | the MCP endpoint as clients name it: token audience and RFC 9728 `resource` |
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
//! | `CIRCUIT_BREAKER_FAILURE_THRESHOLD` | `5` | consecutive failures that open an upstream's circuit breaker (at least 1) |
//! | `CIRCUIT_BREAKER_RESET_TIMEOUT` | `60000` | milliseconds an open breaker waits before letting a probe through (at least 1) |
//! | `MCP_CONFIG_FILE` | — | a TOML file with the same settings (see [below](#the-settings-file)); environment variables override it |
//! | `MCP_CORS_ORIGINS` | empty (no CORS) | browser origins granted CORS; `*` (any origin) is refused in production |
//! | `MCP_REQUEST_TIMEOUT` | `30` | seconds a request may take before it is answered 504 (1–86400) |
//! | `MCP_TOOL_ANNOTATION_SCOPES` | — | JSON object, tool hint → scopes a caller needs for tools with it: `{"destructiveHint":["tools:write"]}` (a hint a tool does not state takes MCP's default: destructive and open-world unless it says otherwise) |
//! | `MCP_TOOL_ANNOTATIONS_OFF` | — | JSON object, tool hint → namespaces (or `*`) where tools with it are off: `{"openWorldHint":["kids"]}` |
//! | `MCP_TOOL_TIMEOUTS` | — | JSON object, tool → milliseconds one call may run, on every transport and stream: `{"search":5000,"*":30000}`; other tools get `MCP_REQUEST_TIMEOUT` |
//! | `MCP_ADMIN_ROLE` | `admin` | the role that may read `/status` |
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

use crate::error::ConfigError;

// Layout: `settings` declares every setting once (name, redaction, view);
// `source` reads the environment (or pairs) over the settings file (`file`)
// over the defaults; `value` holds the parsers every area shares; `network`,
// `auth`, `rate_limit`, `breaker` and `operations` validate their settings;
// `redaction` shows them with secrets hidden; `suggest` names the closest
// known setting to an unknown one.
mod auth;
mod breaker;
#[cfg(feature = "config-file")]
mod file;
mod network;
mod operations;
mod rate_limit;
mod redaction;
mod settings;
mod source;
mod suggest;
#[cfg(test)]
mod tests;
mod value;
mod vars;

pub use auth::{
    AuthMode, DEFAULT_DPOP_MAX_AGE_SECONDS, DEFAULT_JWT_LEEWAY_SECONDS, DpopMode,
    MIN_API_KEY_CHARS, MIN_JWT_SECRET_BYTES,
};
pub use breaker::{
    DEFAULT_CIRCUIT_BREAKER_FAILURE_THRESHOLD, DEFAULT_CIRCUIT_BREAKER_RESET_TIMEOUT,
};
pub use network::DEFAULT_MAX_BODY_BYTES;
pub use operations::{DEFAULT_ADMIN_ROLE, DEFAULT_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT_SECONDS};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use rate_limit::relabel_redis_error;
pub use rate_limit::{
    DEFAULT_RATE_LIMIT_IPV6_PREFIX, DEFAULT_RATE_LIMIT_MAX_KEYS, DEFAULT_RATE_LIMIT_REDIS_PREFIX,
    DEFAULT_RATE_LIMIT_RPM, RateLimitQuota, RateLimitStorage,
};
pub use settings::{VARIABLES, WardenConfig};

#[cfg(any(feature = "auth", feature = "signature"))]
pub(crate) use value::hex_array;

pub use source::Source;

/// `url` as the settings show it: the user kept, the password, query
/// values and fragment hidden (what `redacted_json`, `Debug` and the errors
/// of URL settings print).
#[must_use]
pub fn redact_url(url: &str) -> String {
    crate::url_text::redact(url)
}
use vars::Vars;

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

impl WardenConfig {
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

    /// Every setting of `vars`, validated area by area; the first error
    /// wins, in this order.
    fn load(vars: &Vars) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        network::load_listener(vars, &mut config)?;
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
        auth::load_mode(vars, &mut config)?;
        network::load(vars, &mut config)?;
        auth::load(vars, &mut config)?;
        rate_limit::load(vars, &mut config)?;
        breaker::load(vars, &mut config)?;
        operations::load(vars, &mut config)?;
        Ok(config)
    }
}
