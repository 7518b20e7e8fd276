//! The listener and the network perimeter: `MCP_HOST`, `MCP_PORT`, the IP
//! allow and block lists, trusted proxies, client certificates, the body
//! limit, and the `Host` / `Origin` lists.

use std::net::IpAddr;

use super::WardenConfig;
use super::value::{boolean, is_host_name, list, nets};
use super::vars::Vars;
use crate::error::ConfigError;

/// Default `MCP_HTTP_MAX_BODY_BYTES`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const MAX_PROXY_DEPTH: usize = 64;

/// `MCP_HOST` and `MCP_PORT`.
pub(super) fn load_listener(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
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
    Ok(())
}

/// Who may connect, through which proxies, with what.
pub(super) fn load(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
    config.allowed_ips = nets(vars, "MCP_ALLOWED_IPS")?.unwrap_or_default();
    config.blocked_ips = nets(vars, "MCP_BLOCKED_IPS")?.unwrap_or_default();
    config.trusted_proxies = nets(vars, "MCP_TRUSTED_PROXIES")?.unwrap_or_default();
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
    Ok(())
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
