//! The declaration of every setting: one entry each, in
//! `declare_settings!` below.
//!
//! An entry declares the field of [`WardenConfig`] (its doc, type and
//! default) and the environment variables it is read from: each variable's
//! name (its settings-file key is derived from it by [`key_of`]), whether
//! its value is a secret or a URL to redact, and how its effective value is
//! shown. From these entries come the struct, its `Default`, [`SETTINGS`],
//! [`VARIABLES`], the keys the settings file accepts,
//! [`WardenConfig::redacted_json`] and `Debug` (which prints the redacted
//! JSON), so a secret cannot be hidden in one view and shown in another,
//! and a default cannot differ between the struct and its documentation in
//! code. What a value must look like is checked by the area loaders
//! (`network`, `auth`, `rate_limit`, `breaker`, `operations`).

use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::{
    AuthMode, DEFAULT_ADMIN_ROLE, DEFAULT_CIRCUIT_BREAKER_FAILURE_THRESHOLD,
    DEFAULT_CIRCUIT_BREAKER_RESET_TIMEOUT, DEFAULT_DPOP_MAX_AGE_SECONDS,
    DEFAULT_JWT_LEEWAY_SECONDS, DEFAULT_MAX_BODY_BYTES, DEFAULT_RATE_LIMIT_IPV6_PREFIX,
    DEFAULT_RATE_LIMIT_MAX_KEYS, DEFAULT_RATE_LIMIT_REDIS_PREFIX, DEFAULT_REQUEST_TIMEOUT,
    DpopMode, Environment, RateLimitQuota, RateLimitStorage,
};

/// Default `MCP_CLIENT_CERT_HEADER`.
const DEFAULT_CERT_HEADER: &str = "X-SSL-Client-Verify";
/// Default `MCP_CLIENT_CERT_HEADER_VALUE`.
const DEFAULT_CERT_HEADER_VALUE: &str = "SUCCESS";
/// Default `MCP_ALLOWED_HOSTS`: the loopback names.
const DEFAULT_ALLOWED_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// How a setting is shown by [`WardenConfig::redacted_json`] and `Debug`:
/// part of the setting's declaration in [`SETTINGS`]; applied by the
/// `redaction` module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Redaction {
    /// Shown as it is.
    Shown,
    /// A secret: never shown (a list shows how many entries it has).
    Secret,
    /// A URL (or a list of URLs): shown without the password of its user
    /// info, its query values or its fragment (`url_text::redact`).
    Url,
}

/// How a setting's effective value appears in
/// [`WardenConfig::redacted_json`].
#[derive(Clone, Copy)]
pub(super) enum View {
    /// Under the setting's own key.
    Key(fn(&WardenConfig) -> Value),
    /// Under another key: settings read together into one value (the
    /// rate-limit quota).
    Named(&'static str, fn(&WardenConfig) -> Value),
    /// Shown by another setting's view (an alias, or one part of a group).
    Elsewhere,
}

/// One setting's declaration.
#[derive(Clone, Copy)]
pub(super) struct Setting {
    /// The environment variable.
    pub(super) name: &'static str,
    /// Whether its value is hidden (or its URL credentials) when shown.
    pub(super) redaction: Redaction,
    /// How its effective value is shown.
    pub(super) view: View,
}

const fn shown(name: &'static str, view: fn(&WardenConfig) -> Value) -> Setting {
    Setting {
        name,
        redaction: Redaction::Shown,
        view: View::Key(view),
    }
}

const fn secret(name: &'static str, view: fn(&WardenConfig) -> Value) -> Setting {
    Setting {
        name,
        redaction: Redaction::Secret,
        view: View::Key(view),
    }
}

const fn url(name: &'static str, view: fn(&WardenConfig) -> Value) -> Setting {
    Setting {
        name,
        redaction: Redaction::Url,
        view: View::Key(view),
    }
}

const fn elsewhere(name: &'static str) -> Setting {
    Setting {
        name,
        redaction: Redaction::Shown,
        view: View::Elsewhere,
    }
}

fn nets(items: &[IpNet]) -> Value {
    Value::from(items.iter().map(ToString::to_string).collect::<Vec<_>>())
}

fn millis(duration: Duration) -> Value {
    Value::from(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// Declares every setting once: the field of [`WardenConfig`] (its doc, type
/// and default) and the variables it is read from (name, redaction, how it
/// is shown). From it come the struct, its `Default`, and [`SETTINGS`].
macro_rules! declare_settings {
    (
        $(
            $(#[$doc:meta])*
            $field:ident: $ty:ty = $default:expr,
            [$($setting:expr),* $(,)?];
        )*
    ) => {
        /// Every setting of the security perimeter, validated. See the
        /// [module docs](super) for the variables; an application reads its
        /// own settings beside these through [`Source`](super::Source).
        #[derive(Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct WardenConfig {
            $(
                $(#[$doc])*
                pub $field: $ty,
            )*
        }

        impl Default for WardenConfig {
            /// Every setting at its declared default.
            fn default() -> Self {
                Self {
                    $($field: $default,)*
                }
            }
        }

        /// Every variable [`WardenConfig`] reads, in the order of their
        /// declarations below. A new setting is one declaration there plus
        /// its validation in the loader of its area.
        pub(super) const SETTINGS: &[Setting] = &[$($($setting,)*)*];
    };
}

declare_settings! {
    /// `MCP_HOST`: the address or name to listen on.
    host: String = "127.0.0.1".to_owned(),
    [
        // The listener and the network perimeter (`network`).
        shown("MCP_HOST", |c| json!(c.host)),
    ];
    /// `MCP_PORT`: the port to listen on.
    port: u16 = 8000,
    [
        shown("MCP_PORT", |c| json!(c.port)),
    ];
    /// `MCP_ENVIRONMENT`.
    environment: Environment = Environment::Development,
    [
        shown("MCP_ENVIRONMENT", |c| json!(c.environment.as_str())),
    ];
    /// `MCP_AUTH_MODE`.
    auth_mode: AuthMode = AuthMode::Jwt,
    [
        shown("MCP_AUTH_MODE", |c| json!(c.auth_mode.as_str())),
    ];
    /// `MCP_ALLOWED_IPS`: when not empty, only these clients are served.
    allowed_ips: Vec<IpNet> = Vec::new(),
    [
        shown("MCP_ALLOWED_IPS", |c| nets(&c.allowed_ips)),
    ];
    /// `MCP_BLOCKED_IPS`: clients that are refused.
    blocked_ips: Vec<IpNet> = Vec::new(),
    [
        shown("MCP_BLOCKED_IPS", |c| nets(&c.blocked_ips)),
    ];
    /// `MCP_TRUST_X_FORWARDED`: resolve the client behind
    /// [`trusted_proxies`](Self::trusted_proxies) from `X-Forwarded-For`.
    trust_x_forwarded: bool = false,
    [
        shown("MCP_TRUST_X_FORWARDED", |c| json!(c.trust_x_forwarded)),
    ];
    /// `MCP_TRUSTED_PROXIES`.
    trusted_proxies: Vec<IpNet> = Vec::new(),
    [
        shown("MCP_TRUSTED_PROXIES", |c| nets(&c.trusted_proxies)),
    ];
    /// `MCP_TRUSTED_PROXY_DEPTH`: the proxies that append to
    /// `X-Forwarded-For`.
    trusted_proxy_depth: usize = 1,
    [
        shown("MCP_TRUSTED_PROXY_DEPTH", |c| json!(c.trusted_proxy_depth)),
    ];
    /// `MCP_CLIENT_CERT_REQUIRED`.
    client_cert_required: bool = false,
    [
        shown("MCP_CLIENT_CERT_REQUIRED", |c| {
            json!(c.client_cert_required)
        }),
    ];
    /// `MCP_CLIENT_CERT_HEADER`: the header a trusted TLS proxy sets.
    client_cert_header: String = DEFAULT_CERT_HEADER.to_owned(),
    [
        shown("MCP_CLIENT_CERT_HEADER", |c| json!(c.client_cert_header)),
    ];
    /// `MCP_CLIENT_CERT_HEADER_VALUE`: its value for a verified certificate.
    client_cert_header_value: String = DEFAULT_CERT_HEADER_VALUE.to_owned(),
    [
        secret("MCP_CLIENT_CERT_HEADER_VALUE", |c| {
            json!(c.client_cert_header_value)
        }),
    ];
    /// `MCP_HTTP_MAX_BODY_BYTES` (or `MCP_MAX_REQUEST_SIZE`).
    max_body_bytes: u64 = DEFAULT_MAX_BODY_BYTES,
    [
        shown("MCP_HTTP_MAX_BODY_BYTES", |c| json!(c.max_body_bytes)),
        // An alias of `MCP_HTTP_MAX_BODY_BYTES`.
        elsewhere("MCP_MAX_REQUEST_SIZE"),
    ];
    /// `MCP_ALLOWED_ORIGINS`: browser origins allowed besides the server's
    /// own host.
    allowed_origins: Vec<String> = Vec::new(),
    [
        url("MCP_ALLOWED_ORIGINS", |c| json!(c.allowed_origins)),
    ];
    /// `MCP_ALLOWED_HOSTS`: the `Host` values this server answers for.
    allowed_hosts: Vec<String> = DEFAULT_ALLOWED_HOSTS
.iter()
.map(|h| (*h).to_owned())
.collect(),
    [
        shown("MCP_ALLOWED_HOSTS", |c| json!(c.allowed_hosts)),
    ];
    /// `MCP_JWT_SECRET`: the HMAC secret of HS* tokens (secret).
    jwt_secret: Option<String> = None,
    [
        // Authentication (`auth`).
        secret("MCP_JWT_SECRET", |c| json!(c.jwt_secret)),
    ];
    /// `MCP_JWT_ALGORITHM`: `HS256` (default with a secret), `RS256`
    /// (default with a public key file), ... `EdDSA`.
    jwt_algorithm: Option<String> = None,
    [
        shown("MCP_JWT_ALGORITHM", |c| json!(c.jwt_algorithm)),
    ];
    /// `MCP_JWT_PUBLIC_KEY_FILE`: a PEM public key.
    jwt_public_key_file: Option<PathBuf> = None,
    [
        shown("MCP_JWT_PUBLIC_KEY_FILE", |c| json!(c.jwt_public_key_file)),
    ];
    /// `MCP_JWKS_FILE`: a JWKS document.
    jwks_file: Option<PathBuf> = None,
    [
        shown("MCP_JWKS_FILE", |c| json!(c.jwks_file)),
    ];
    /// `MCP_JWKS_URL`: where to fetch the JWKS.
    jwks_url: Option<String> = None,
    [
        url("MCP_JWKS_URL", |c| json!(c.jwks_url)),
    ];
    /// `MCP_INTROSPECTION_URL`: the authorization server's token
    /// introspection endpoint (RFC 7662); set, opaque bearer tokens are
    /// asked of it.
    introspection_url: Option<String> = None,
    [
        url("MCP_INTROSPECTION_URL", |c| json!(c.introspection_url)),
    ];
    /// `MCP_INTROSPECTION_CLIENT_ID`: this server's client id at the
    /// introspection endpoint.
    introspection_client_id: Option<String> = None,
    [
        shown("MCP_INTROSPECTION_CLIENT_ID", |c| json!(c.introspection_client_id)),
    ];
    /// `MCP_INTROSPECTION_CLIENT_SECRET`: its client secret (secret).
    introspection_client_secret: Option<String> = None,
    [
        secret("MCP_INTROSPECTION_CLIENT_SECRET", |c| {
            json!(c.introspection_client_secret)
        }),
    ];
    /// `MCP_INTROSPECTION_CLIENT_KEY_FILE`: a PEM private key for
    /// `private_key_jwt` instead of a secret.
    introspection_client_key_file: Option<PathBuf> = None,
    [
        shown("MCP_INTROSPECTION_CLIENT_KEY_FILE", |c| {
            json!(c.introspection_client_key_file)
        }),
    ];
    /// `MCP_INTROSPECTION_CLIENT_AUTH`: `client_secret_basic` (the default
    /// with a secret), `client_secret_post`, or `private_key_jwt` (the
    /// default with a key file).
    introspection_client_auth: Option<String> = None,
    [
        shown("MCP_INTROSPECTION_CLIENT_AUTH", |c| json!(c.introspection_client_auth)),
    ];
    /// `MCP_INTROSPECTION_CACHE_TTL_SECONDS`: the longest an answer is
    /// reused (never past the token's `exp`; 0: never).
    introspection_cache_ttl_seconds: u64 = 60,
    [
        shown("MCP_INTROSPECTION_CACHE_TTL_SECONDS", |c| {
            json!(c.introspection_cache_ttl_seconds)
        }),
    ];
    /// `MCP_INTROSPECTION_FAIL_MODE`: `closed` (503 while the endpoint
    /// cannot answer, the default) or `cached` (tokens it last called
    /// active pass until their `exp`).
    introspection_fail_mode: String = "closed".to_owned(),
    [
        shown("MCP_INTROSPECTION_FAIL_MODE", |c| json!(c.introspection_fail_mode)),
    ];
    /// `MCP_TOKEN_EXCHANGE_URL`: the authorization server's token
    /// endpoint, where a gateway exchanges the caller's access token for
    /// one meant for an upstream (RFC 8693); set, `AuthLayer` keeps the
    /// verified token for it.
    token_exchange_url: Option<String> = None,
    [
        url("MCP_TOKEN_EXCHANGE_URL", |c| json!(c.token_exchange_url)),
    ];
    /// `MCP_TOKEN_EXCHANGE_CLIENT_ID`: the gateway's client id at the
    /// token endpoint.
    token_exchange_client_id: Option<String> = None,
    [
        shown("MCP_TOKEN_EXCHANGE_CLIENT_ID", |c| json!(c.token_exchange_client_id)),
    ];
    /// `MCP_TOKEN_EXCHANGE_CLIENT_SECRET`: its client secret (secret).
    token_exchange_client_secret: Option<String> = None,
    [
        secret("MCP_TOKEN_EXCHANGE_CLIENT_SECRET", |c| {
            json!(c.token_exchange_client_secret)
        }),
    ];
    /// `MCP_TOKEN_EXCHANGE_CLIENT_KEY_FILE`: a PEM private key for
    /// `private_key_jwt` instead of a secret.
    token_exchange_client_key_file: Option<PathBuf> = None,
    [
        shown("MCP_TOKEN_EXCHANGE_CLIENT_KEY_FILE", |c| {
            json!(c.token_exchange_client_key_file)
        }),
    ];
    /// `MCP_TOKEN_EXCHANGE_CLIENT_AUTH`: `client_secret_basic` (the
    /// default with a secret), `client_secret_post`, or `private_key_jwt`
    /// (the default with a key file).
    token_exchange_client_auth: Option<String> = None,
    [
        shown("MCP_TOKEN_EXCHANGE_CLIENT_AUTH", |c| json!(c.token_exchange_client_auth)),
    ];
    /// `MCP_JWT_ISSUER`: accepted `iss` values (empty: not checked).
    jwt_issuers: Vec<String> = Vec::new(),
    [
        url("MCP_JWT_ISSUER", |c| json!(c.jwt_issuers)),
    ];
    /// `MCP_JWT_AUDIENCE`: accepted `aud` values; empty means the resource
    /// URL (`MCP_RESOURCE_URL`).
    jwt_audiences: Vec<String> = Vec::new(),
    [
        url("MCP_JWT_AUDIENCE", |c| json!(c.jwt_audiences)),
    ];
    /// `MCP_JWT_LEEWAY_SECONDS`: clock-skew allowance on `exp`/`nbf`.
    jwt_leeway_seconds: u64 = DEFAULT_JWT_LEEWAY_SECONDS,
    [
        shown("MCP_JWT_LEEWAY_SECONDS", |c| json!(c.jwt_leeway_seconds)),
    ];
    /// `MCP_DPOP`: whether DPoP-bound (RFC 9449) tokens are accepted
    /// (`allowed`, the default), required, or refused (`off`).
    dpop: DpopMode = DpopMode::Allowed,
    [
        shown("MCP_DPOP", |c| json!(c.dpop.as_str())),
    ];
    /// `MCP_DPOP_MAX_AGE_SECONDS`: how old a DPoP proof's `iat` may be
    /// (1–300); its `jti` is remembered that long to refuse replays.
    dpop_max_age_seconds: u64 = DEFAULT_DPOP_MAX_AGE_SECONDS,
    [
        shown("MCP_DPOP_MAX_AGE_SECONDS", |c| json!(c.dpop_max_age_seconds)),
    ];
    /// `MCP_API_KEYS`: accepted API keys, each with every scope (secret).
    api_keys: Vec<String> = Vec::new(),
    [
        secret("MCP_API_KEYS", |c| json!(c.api_keys)),
    ];
    /// `MCP_API_KEYS_FILE`: stored key digests with their principals.
    api_keys_file: Option<PathBuf> = None,
    [
        shown("MCP_API_KEYS_FILE", |c| json!(c.api_keys_file)),
    ];
    /// `MCP_API_KEY_SALT`: the salt of the stored digests (secret).
    api_key_salt: Option<String> = None,
    [
        secret("MCP_API_KEY_SALT", |c| json!(c.api_key_salt)),
    ];
    /// `MCP_TOOL_SCOPES`: tool rule → scopes a caller needs to call it.
    /// A rule is a tool name, `*.<tool>` (that tool on any gateway
    /// connection, whatever its `server_name`) or `*` (every other tool);
    /// see [`ToolRules`](crate::tool_rules::ToolRules).
    tool_scopes: Vec<(String, Vec<String>)> = Vec::new(),
    [
        shown("MCP_TOOL_SCOPES", |c| {
            let rules = c.tool_scopes.iter();
            Value::Object(rules.map(|(t, s)| (t.clone(), json!(s))).collect())
        }),
    ];
    /// `MCP_RESOURCE_URL`: this server's MCP endpoint as clients name it
    /// (the token audience, RFC 8707); derived from host and port if unset.
    resource_url: Option<String> = None,
    [
        url("MCP_RESOURCE_URL", |c| json!(c.resource_url)),
    ];
    /// `MCP_WS_ALLOW_QUERY_AUTH`: accept credentials in the query string of
    /// WebSocket upgrades.
    ws_allow_query_auth: bool = false,
    [
        shown("MCP_WS_ALLOW_QUERY_AUTH", |c| json!(c.ws_allow_query_auth)),
    ];
    /// `MCP_RATE_LIMIT_ENABLED`: whether requests are rate limited.
    rate_limit_enabled: bool = true,
    [
        // Rate limits (`rate_limit`); the four quota variables show as one
        // `rate_limit_quota`.
        shown("MCP_RATE_LIMIT_ENABLED", |c| json!(c.rate_limit_enabled)),
    ];
    /// The quota per key: `MCP_RATE_LIMIT_RPM` and `MCP_RATE_LIMIT_BURST`,
    /// or `RATE_LIMIT_WINDOW_MS` and `RATE_LIMIT_MAX_REQUESTS`.
    rate_limit_quota: RateLimitQuota = RateLimitQuota::default(),
    [
        Setting {
            name: "MCP_RATE_LIMIT_RPM",
            redaction: Redaction::Shown,
            view: View::Named("rate_limit_quota", |c| c.rate_limit_quota.to_json()),
        },
        elsewhere("MCP_RATE_LIMIT_BURST"),
        elsewhere("RATE_LIMIT_WINDOW_MS"),
        elsewhere("RATE_LIMIT_MAX_REQUESTS"),
    ];
    /// `MCP_RATE_LIMIT_STORAGE`: where the counters are kept.
    rate_limit_storage: RateLimitStorage = RateLimitStorage::Memory,
    [
        shown("MCP_RATE_LIMIT_STORAGE", |c| {
            json!(c.rate_limit_storage.as_str())
        }),
    ];
    /// `MCP_REDIS_URL`: the Redis server of
    /// [`RateLimitStorage::Redis`] (`redis://` or `rediss://`; may hold a
    /// password, which `Debug` never prints).
    redis_url: Option<String> = None,
    [
        url("MCP_REDIS_URL", |c| json!(c.redis_url)),
    ];
    /// `MCP_REDIS_CA_FILE`: PEM certificates a `rediss://` server's
    /// certificate is verified against, instead of the system's roots.
    redis_ca_file: Option<PathBuf> = None,
    [
        shown("MCP_REDIS_CA_FILE", |c| json!(c.redis_ca_file)),
    ];
    /// `MCP_RATE_LIMIT_FAIL_MODE`: what a shared store does while its
    /// backend is unreachable.
    rate_limit_fail_mode: crate::rate_limit::FailMode = crate::rate_limit::FailMode::Local,
    [
        shown("MCP_RATE_LIMIT_FAIL_MODE", |c| {
            json!(c.rate_limit_fail_mode.as_str())
        }),
    ];
    /// `MCP_RATE_LIMIT_MAX_KEYS`: the most keys the in-memory store tracks.
    rate_limit_max_keys: usize = DEFAULT_RATE_LIMIT_MAX_KEYS,
    [
        shown("MCP_RATE_LIMIT_MAX_KEYS", |c| json!(c.rate_limit_max_keys)),
    ];
    /// `MCP_TOOL_RATE_LIMITS`: tool rule → requests a minute per key,
    /// rules as in [`tool_scopes`](Self::tool_scopes); every tool a rule
    /// matches draws on the rule's one allowance.
    tool_rate_limits: Vec<(String, u32)> = Vec::new(),
    [
        shown("MCP_TOOL_RATE_LIMITS", |c| {
            let rules = c.tool_rate_limits.iter();
            Value::Object(rules.map(|(t, n)| (t.clone(), json!(n))).collect())
        }),
    ];
    /// `MCP_RATE_LIMIT_IPV6_PREFIX`: IPv6 clients are limited per prefix of
    /// this length (1–128), since one host often holds a whole /64.
    rate_limit_ipv6_prefix: u8 = DEFAULT_RATE_LIMIT_IPV6_PREFIX,
    [
        shown("MCP_RATE_LIMIT_IPV6_PREFIX", |c| {
            json!(c.rate_limit_ipv6_prefix)
        }),
    ];
    /// `MCP_RATE_LIMIT_REDIS_PREFIX`: the prefix of every Redis key the
    /// limiter writes.
    rate_limit_redis_prefix: String = DEFAULT_RATE_LIMIT_REDIS_PREFIX.to_owned(),
    [
        shown("MCP_RATE_LIMIT_REDIS_PREFIX", |c| {
            json!(c.rate_limit_redis_prefix)
        }),
    ];
    /// `CIRCUIT_BREAKER_FAILURE_THRESHOLD`: consecutive failures that open
    /// an upstream's breaker.
    circuit_breaker_failure_threshold: u32 = DEFAULT_CIRCUIT_BREAKER_FAILURE_THRESHOLD,
    [
        // Circuit breakers (`breaker`).
        shown("CIRCUIT_BREAKER_FAILURE_THRESHOLD", |c| {
            json!(c.circuit_breaker_failure_threshold)
        }),
    ];
    /// `CIRCUIT_BREAKER_RESET_TIMEOUT` (milliseconds): how long an open
    /// breaker waits before a probe.
    circuit_breaker_reset_timeout: Duration = DEFAULT_CIRCUIT_BREAKER_RESET_TIMEOUT,
    [
        shown("CIRCUIT_BREAKER_RESET_TIMEOUT", |c| {
            millis(c.circuit_breaker_reset_timeout)
        }),
    ];
    /// `MCP_CONFIG_FILE`: the settings file these settings were read from.
    config_file: Option<PathBuf> = None,
    [
        // Operations (`operations`).
        shown("MCP_CONFIG_FILE", |c| json!(c.config_file)),
    ];
    /// `MCP_CORS_ORIGINS`: browser origins granted CORS (`*`: any).
    cors_origins: Vec<String> = Vec::new(),
    [
        url("MCP_CORS_ORIGINS", |c| json!(c.cors_origins)),
    ];
    /// `MCP_REQUEST_TIMEOUT` (seconds): how long a request may take.
    request_timeout: Duration = DEFAULT_REQUEST_TIMEOUT,
    [
        shown("MCP_REQUEST_TIMEOUT", |c| {
            json!(c.request_timeout.as_secs())
        }),
    ];
    /// `MCP_TOOL_TIMEOUTS`: tool rule → how long one call of the tool may
    /// run (rules as in [`tool_scopes`](Self::tool_scopes)); a tool no rule
    /// matches may run [`request_timeout`](Self::request_timeout).
    tool_timeouts: Vec<(String, Duration)> = Vec::new(),
    [
        shown("MCP_TOOL_TIMEOUTS", |c| {
            let rules = c.tool_timeouts.iter();
            Value::Object(rules.map(|(t, d)| (t.clone(), json!(d.as_millis()))).collect())
        }),
    ];
    /// `MCP_TOOL_ANNOTATION_SCOPES`: tool hint (`destructiveHint`, …) →
    /// scopes a caller needs for a tool with it; see
    /// [`AnnotationPolicy`](crate::tool_rules::AnnotationPolicy).
    tool_annotation_scopes: Vec<(String, Vec<String>)> = Vec::new(),
    [
        shown("MCP_TOOL_ANNOTATION_SCOPES", |c| {
            let rules = c.tool_annotation_scopes.iter();
            Value::Object(rules.map(|(h, s)| (h.clone(), json!(s))).collect())
        }),
    ];
    /// `MCP_TOOL_ANNOTATIONS_OFF`: tool hint → namespaces (`*`: all) in
    /// which tools with it are off.
    tool_annotations_off: Vec<(String, Vec<String>)> = Vec::new(),
    [
        shown("MCP_TOOL_ANNOTATIONS_OFF", |c| {
            let rules = c.tool_annotations_off.iter();
            Value::Object(rules.map(|(h, n)| (h.clone(), json!(n))).collect())
        }),
    ];
    /// `MCP_ADMIN_ROLE`: the role that may read `/status`.
    admin_role: String = DEFAULT_ADMIN_ROLE.to_owned(),
    [
        shown("MCP_ADMIN_ROLE", |c| json!(c.admin_role)),
    ];
    /// `MCP_ADMIN_ROLE` when it is set: the role that may work in every
    /// namespace (the gateway's connections). `None` by default: no role
    /// crosses namespaces unless configured.
    cross_namespace_role: Option<String> = None,
    [];
}

/// Every environment variable [`WardenConfig`] reads, in the order of
/// their declarations. All start with `MCP_` but `RATE_LIMIT_WINDOW_MS`,
/// `RATE_LIMIT_MAX_REQUESTS` and the two `CIRCUIT_BREAKER_*`.
pub const VARIABLES: [&str; SETTINGS.len()] = {
    let mut names = [""; SETTINGS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = SETTINGS[i].name;
        i += 1;
    }
    names
};

/// The key of `variable` in a settings file and in
/// [`WardenConfig::redacted_json`]: lower case, without `MCP_`.
pub(super) fn key_of(variable: &str) -> String {
    variable
        .strip_prefix("MCP_")
        .unwrap_or(variable)
        .to_ascii_lowercase()
}
