//! The limiter's defaults, compiled in every build: the settings
//! (`MCP_RATE_LIMIT_*`) default to these same values.

/// The default cap on the keys a `MemoryStore` tracks
/// (`MCP_RATE_LIMIT_MAX_KEYS`).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// The IPv6 prefix one customer line usually gets, a /64: how client
/// addresses are grouped by default (`MCP_RATE_LIMIT_IPV6_PREFIX`).
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The default prefix of every Redis key a `RedisStore` writes
/// (`MCP_RATE_LIMIT_REDIS_PREFIX`).
pub const DEFAULT_REDIS_PREFIX: &str = "tower-warden:rl:";
