//! Rate-limit settings: the quota, the store (memory or Redis), the fail
//! mode and the per-tool limits.

use std::fmt;
use std::time::Duration;

use super::WardenConfig;
use super::value::{boolean, path, tool_numbers, whole};
use super::vars::Vars;
use crate::error::ConfigError;
use crate::rate_limit::FailMode;
use crate::url_text;

/// Default `MCP_RATE_LIMIT_RPM` (and so `MCP_RATE_LIMIT_BURST`): two
/// requests a second on average per key, enough for an agent's bursts of
/// tool calls.
pub const DEFAULT_RATE_LIMIT_RPM: u32 = 120;
/// Default `MCP_RATE_LIMIT_MAX_KEYS`.
pub const DEFAULT_RATE_LIMIT_MAX_KEYS: usize = crate::rate_limit::DEFAULT_MAX_KEYS;
/// Default `MCP_RATE_LIMIT_IPV6_PREFIX`: one quota per /64.
pub const DEFAULT_RATE_LIMIT_IPV6_PREFIX: u8 = crate::rate_limit::DEFAULT_IPV6_PREFIX;
/// Default `MCP_RATE_LIMIT_REDIS_PREFIX`.
pub const DEFAULT_RATE_LIMIT_REDIS_PREFIX: &str = crate::rate_limit::DEFAULT_REDIS_PREFIX;

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
    pub(super) fn to_json(self) -> serde_json::Value {
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
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
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

/// The quota, the store and the per-tool limits.
pub(super) fn load(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
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
    if config.redis_ca_file.is_some()
        && !config
            .redis_url
            .as_deref()
            .is_some_and(url_text::is_redis_tls)
    {
        return Err(ca_file_without_tls());
    }
    if let Some(text) = vars.get("MCP_RATE_LIMIT_FAIL_MODE") {
        // `open` is allowed in every environment: it is the operator's
        // explicit choice, so it is only validated here.
        config.rate_limit_fail_mode = match text.to_ascii_lowercase().as_str() {
            "local" => FailMode::Local,
            "closed" => FailMode::Closed,
            "open" => FailMode::Open,
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

/// `MCP_REDIS_CA_FILE` given for a Redis URL without TLS.
fn ca_file_without_tls() -> ConfigError {
    ConfigError::new(
        "MCP_REDIS_CA_FILE",
        "is for TLS: MCP_REDIS_URL must be a rediss:// URL",
    )
}

/// `MCP_REDIS_URL`: `redis://` or `rediss://` with a host. The value may
/// hold a password, so errors never echo it.
fn redis_url(text: &str) -> Result<String, ConfigError> {
    if !url_text::is_redis_url(text) {
        return Err(ConfigError::new(
            "MCP_REDIS_URL",
            "is not a redis:// or rediss:// URL with a host (the value is not shown: it may hold a password)",
        ));
    }
    Ok(text.to_owned())
}

/// `MCP_TOOL_RATE_LIMITS`: `{"tool": requests_per_minute, ...}`.
fn tool_rate_limits(text: &str) -> Result<Vec<(String, u32)>, ConfigError> {
    let limits = tool_numbers(
        "MCP_TOOL_RATE_LIMITS",
        text,
        1,
        u64::from(u32::MAX),
        "requests a minute",
    )?;
    Ok(limits
        .into_iter()
        .map(|(tool, n)| (tool, u32::try_from(n).unwrap_or(u32::MAX)))
        .collect())
}

/// `error` from the Redis store's checks of its URL and CA certificates
/// ([`RedisStore::new`](crate::rate_limit::RedisStore::new),
/// [`RedisStore::with_root_certificates`](crate::rate_limit::RedisStore::with_root_certificates),
/// [`redis_client`](crate::rate_limit::redis_client)), named by the
/// variable that fed it: `MCP_REDIS_URL` or `MCP_REDIS_CA_FILE`. Any other
/// error is returned as it is.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[must_use]
pub fn relabel_redis_error(error: ConfigError) -> ConfigError {
    use crate::rate_limit::{CA_SETTING, URL_SETTING};
    match error.setting() {
        URL_SETTING => error.for_setting("MCP_REDIS_URL"),
        CA_SETTING => error.for_setting("MCP_REDIS_CA_FILE"),
        _ => error,
    }
}
