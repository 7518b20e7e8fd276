//! Gateway settings: the connection store, upstream circuit breakers,
//! private upstreams, limits, the credential key and the API scope.

use std::time::Duration;

use super::WardenConfig;
use super::source::Vars;
use super::value::{boolean, hex_array, whole};
use crate::error::ConfigError;

/// Default `MCP_DATABASE_URL`: an SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./data/mcp.db";
/// Default `CIRCUIT_BREAKER_FAILURE_THRESHOLD`.
pub const DEFAULT_CIRCUIT_BREAKER_FAILURE_THRESHOLD: u32 = 5;
/// Default `CIRCUIT_BREAKER_RESET_TIMEOUT`: one minute.
pub const DEFAULT_CIRCUIT_BREAKER_RESET_TIMEOUT: Duration = Duration::from_secs(60);
/// The scope the gateway's connection API requires unless
/// `MCP_GATEWAY_SCOPE` names another.
pub const DEFAULT_GATEWAY_SCOPE: &str = "gateway:connections";

/// The gateway and its upstreams.
pub(super) fn load(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
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
