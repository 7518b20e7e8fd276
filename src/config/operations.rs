//! Operations settings: the settings file, CORS, the request timeout, tool
//! deadlines and the admin role.

use std::net::IpAddr;
use std::time::Duration;

use super::WardenConfig;
use super::value::{is_host_name, list, path, tool_numbers, whole};
use super::vars::Vars;
use crate::error::ConfigError;
use crate::tool_rules::{AnnotationPolicy, parse_word_lists};
use crate::url_text::redact as redact_url;

/// Default `MCP_REQUEST_TIMEOUT`: 30 seconds.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `MCP_REQUEST_TIMEOUT`: one day.
pub const MAX_REQUEST_TIMEOUT_SECONDS: u64 = 24 * 60 * 60;
/// Default `MCP_ADMIN_ROLE`.
pub const DEFAULT_ADMIN_ROLE: &str = "admin";

/// The settings file, CORS, the request timeout and the admin role.
pub(super) fn load(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
    config.config_file = path(vars, "MCP_CONFIG_FILE")?;
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
    if let Some(text) = vars.get("MCP_TOOL_TIMEOUTS") {
        config.tool_timeouts = tool_numbers(
            "MCP_TOOL_TIMEOUTS",
            text,
            1,
            MAX_REQUEST_TIMEOUT_SECONDS * 1000,
            "milliseconds",
        )?
        .into_iter()
        .map(|(tool, ms)| (tool, Duration::from_millis(ms)))
        .collect();
    }
    let lists = |name: &'static str, what: &str| {
        vars.get(name)
            .map(|text| parse_word_lists(name, text, "tool hint", what))
            .transpose()
    };
    let scopes = lists("MCP_TOOL_ANNOTATION_SCOPES", "scopes")?;
    let off = lists("MCP_TOOL_ANNOTATIONS_OFF", "namespaces")?;
    if scopes.is_some() || off.is_some() {
        let scopes = scopes.unwrap_or_default();
        let off = off.unwrap_or_default();
        // Checked here, so that a bad rule stops start-up.
        let _: AnnotationPolicy = AnnotationPolicy::try_from_entries(&scopes, &off)?;
        config.tool_annotation_scopes = scopes;
        config.tool_annotations_off = off;
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
