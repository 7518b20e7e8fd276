//! The declaration of every setting: one entry each, in [`SETTINGS`].
//!
//! An entry names the environment variable (its settings-file key is
//! derived from it by [`key_of`]), says whether its value is a secret or
//! a URL to redact, and says how its effective value is shown. From this
//! one table come [`VARIABLES`], the keys the settings file accepts,
//! [`WardenConfig::redacted_json`] and `Debug` (which prints the redacted
//! JSON), so a secret cannot be hidden in one view and shown in another.
//! What a value must look like is checked by the area loaders (`network`,
//! `auth`, `rate_limit`, `breaker`, `operations`).

use std::time::Duration;

use ipnet::IpNet;
use serde_json::{Value, json};

use super::WardenConfig;

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

/// Every setting [`WardenConfig`] reads, in the order of the module docs'
/// table. A new setting is one entry here plus its validation in the
/// loader of its area.
pub(super) const SETTINGS: [Setting; 49] = [
    // The listener and the network perimeter (`network`).
    shown("MCP_HOST", |c| json!(c.host)),
    shown("MCP_PORT", |c| json!(c.port)),
    shown("MCP_ENVIRONMENT", |c| json!(c.environment.as_str())),
    shown("MCP_AUTH_MODE", |c| json!(c.auth_mode.as_str())),
    shown("MCP_ALLOWED_IPS", |c| nets(&c.allowed_ips)),
    shown("MCP_BLOCKED_IPS", |c| nets(&c.blocked_ips)),
    shown("MCP_TRUST_X_FORWARDED", |c| json!(c.trust_x_forwarded)),
    shown("MCP_TRUSTED_PROXIES", |c| nets(&c.trusted_proxies)),
    shown("MCP_TRUSTED_PROXY_DEPTH", |c| json!(c.trusted_proxy_depth)),
    shown("MCP_CLIENT_CERT_REQUIRED", |c| {
        json!(c.client_cert_required)
    }),
    shown("MCP_CLIENT_CERT_HEADER", |c| json!(c.client_cert_header)),
    secret("MCP_CLIENT_CERT_HEADER_VALUE", |c| {
        json!(c.client_cert_header_value)
    }),
    shown("MCP_HTTP_MAX_BODY_BYTES", |c| json!(c.max_body_bytes)),
    // An alias of `MCP_HTTP_MAX_BODY_BYTES`.
    elsewhere("MCP_MAX_REQUEST_SIZE"),
    url("MCP_ALLOWED_ORIGINS", |c| json!(c.allowed_origins)),
    shown("MCP_ALLOWED_HOSTS", |c| json!(c.allowed_hosts)),
    // Authentication (`auth`).
    secret("MCP_JWT_SECRET", |c| json!(c.jwt_secret)),
    shown("MCP_JWT_ALGORITHM", |c| json!(c.jwt_algorithm)),
    shown("MCP_JWT_PUBLIC_KEY_FILE", |c| json!(c.jwt_public_key_file)),
    shown("MCP_JWKS_FILE", |c| json!(c.jwks_file)),
    url("MCP_JWKS_URL", |c| json!(c.jwks_url)),
    url("MCP_JWT_ISSUER", |c| json!(c.jwt_issuers)),
    url("MCP_JWT_AUDIENCE", |c| json!(c.jwt_audiences)),
    shown("MCP_JWT_LEEWAY_SECONDS", |c| json!(c.jwt_leeway_seconds)),
    secret("MCP_API_KEYS", |c| json!(c.api_keys)),
    shown("MCP_API_KEYS_FILE", |c| json!(c.api_keys_file)),
    secret("MCP_API_KEY_SALT", |c| json!(c.api_key_salt)),
    shown("MCP_TOOL_SCOPES", |c| {
        let rules = c.tool_scopes.iter();
        Value::Object(rules.map(|(t, s)| (t.clone(), json!(s))).collect())
    }),
    url("MCP_RESOURCE_URL", |c| json!(c.resource_url)),
    shown("MCP_WS_ALLOW_QUERY_AUTH", |c| json!(c.ws_allow_query_auth)),
    // Rate limits (`rate_limit`); the four quota variables show as one
    // `rate_limit_quota`.
    shown("MCP_RATE_LIMIT_ENABLED", |c| json!(c.rate_limit_enabled)),
    Setting {
        name: "MCP_RATE_LIMIT_RPM",
        redaction: Redaction::Shown,
        view: View::Named("rate_limit_quota", |c| c.rate_limit_quota.to_json()),
    },
    elsewhere("MCP_RATE_LIMIT_BURST"),
    elsewhere("RATE_LIMIT_WINDOW_MS"),
    elsewhere("RATE_LIMIT_MAX_REQUESTS"),
    shown("MCP_RATE_LIMIT_STORAGE", |c| {
        json!(c.rate_limit_storage.as_str())
    }),
    url("MCP_REDIS_URL", |c| json!(c.redis_url)),
    shown("MCP_REDIS_CA_FILE", |c| json!(c.redis_ca_file)),
    shown("MCP_RATE_LIMIT_FAIL_MODE", |c| {
        json!(c.rate_limit_fail_mode.as_str())
    }),
    shown("MCP_RATE_LIMIT_MAX_KEYS", |c| json!(c.rate_limit_max_keys)),
    shown("MCP_TOOL_RATE_LIMITS", |c| {
        let rules = c.tool_rate_limits.iter();
        Value::Object(rules.map(|(t, n)| (t.clone(), json!(n))).collect())
    }),
    shown("MCP_RATE_LIMIT_IPV6_PREFIX", |c| {
        json!(c.rate_limit_ipv6_prefix)
    }),
    shown("MCP_RATE_LIMIT_REDIS_PREFIX", |c| {
        json!(c.rate_limit_redis_prefix)
    }),
    // Circuit breakers (`breaker`).
    shown("CIRCUIT_BREAKER_FAILURE_THRESHOLD", |c| {
        json!(c.circuit_breaker_failure_threshold)
    }),
    shown("CIRCUIT_BREAKER_RESET_TIMEOUT", |c| {
        millis(c.circuit_breaker_reset_timeout)
    }),
    // Operations (`operations`).
    shown("MCP_CONFIG_FILE", |c| json!(c.config_file)),
    url("MCP_CORS_ORIGINS", |c| json!(c.cors_origins)),
    shown("MCP_REQUEST_TIMEOUT", |c| {
        json!(c.request_timeout.as_secs())
    }),
    shown("MCP_ADMIN_ROLE", |c| json!(c.admin_role)),
];

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
