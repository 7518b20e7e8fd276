//! Circuit-breaker settings: when an upstream's breaker opens, and how long
//! it stays open.

use std::time::Duration;

use super::WardenConfig;
use super::value::whole;
use super::vars::Vars;
use crate::error::ConfigError;

/// Default `CIRCUIT_BREAKER_FAILURE_THRESHOLD`.
pub const DEFAULT_CIRCUIT_BREAKER_FAILURE_THRESHOLD: u32 = 5;
/// Default `CIRCUIT_BREAKER_RESET_TIMEOUT`: one minute.
pub const DEFAULT_CIRCUIT_BREAKER_RESET_TIMEOUT: Duration = Duration::from_secs(60);

/// The breaker settings.
pub(super) fn load(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
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
    Ok(())
}
