//! Operations settings: the settings file, logs, audit, metrics access,
//! CORS, timeouts, the admin role, WebSocket pings and the session store.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::WardenConfig;
use super::source::Vars;
use super::value::{is_host_name, list, path, whole};
use crate::cidr::parse_nets;
use crate::error::ConfigError;
use crate::url_text::redact as redact_url;

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

/// Default `MCP_METRICS_ALLOWED_IPS`: loopback only.
pub(super) fn default_metrics_allowed_ips() -> Vec<IpNet> {
    vec![
        IpNet::V4(ipnet::Ipv4Net::new_assert(std::net::Ipv4Addr::LOCALHOST, 8).trunc()),
        IpNet::V6(ipnet::Ipv6Net::new_assert(
            std::net::Ipv6Addr::LOCALHOST,
            128,
        )),
    ]
}

/// Files, logs, metrics, CORS, timeouts and sessions.
pub(super) fn load(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
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
