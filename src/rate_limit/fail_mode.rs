//! What a shared store does while its backend is unreachable: a setting of
//! its own, compiled with every feature set so that the settings can name it.

use std::fmt;

/// What a shared store (a `RedisStore`, feature `redis`) does when its
/// backend cannot be reached in time (`MCP_RATE_LIMIT_FAIL_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailMode {
    /// Decide with the local fallback store (each instance alone, same
    /// quota; a bounded `MemoryStore` unless `RedisStore::fallback` gives
    /// another) and report the store as degraded. The default.
    #[default]
    Local,
    /// Refuse every request until the backend answers again.
    Closed,
    /// Admit every request uncounted until the backend answers again (the
    /// operator's explicit choice).
    Open,
}

impl FailMode {
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

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
