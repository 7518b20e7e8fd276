//! What a rate-limit store decides, and the trait every store implements.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::ConfigError;
use crate::guard::NowOrLater;

/// A GCRA quota: up to `burst` requests at once, refilled at one request per
/// `interval` (so `burst` requests per `burst × interval` on average).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    interval: Duration,
    burst: u32,
}

impl Quota {
    /// `per_minute` requests a minute, with a burst of the same size.
    ///
    /// # Errors
    ///
    /// When `per_minute` is zero.
    pub fn per_minute(per_minute: u32) -> Result<Self, ConfigError> {
        Self::per_window(Duration::from_secs(60), per_minute)
    }

    /// `max` requests per `window`, with a burst of `max`.
    ///
    /// # Errors
    ///
    /// When `max` is zero or `window` is shorter than `max` nanoseconds.
    pub fn per_window(window: Duration, max: u32) -> Result<Self, ConfigError> {
        if max == 0 {
            return Err(ConfigError::new(
                "rate limit",
                "a quota must allow at least one request",
            ));
        }
        let interval = window / max;
        if interval.is_zero() {
            return Err(ConfigError::new(
                "rate limit",
                "the window is too short for that many requests",
            ));
        }
        Ok(Self {
            interval,
            burst: max,
        })
    }

    /// The same refill rate with another burst size.
    ///
    /// # Errors
    ///
    /// When `burst` is zero.
    pub fn with_burst(self, burst: u32) -> Result<Self, ConfigError> {
        if burst == 0 {
            return Err(ConfigError::new(
                "rate limit burst",
                "the burst must be at least 1",
            ));
        }
        Ok(Self { burst, ..self })
    }

    /// The time one request's allowance takes to come back.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many requests may come at once.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The window the `RateLimit-Policy` header names: `burst × interval`.
    #[must_use]
    pub fn window(&self) -> Duration {
        self.interval * self.burst
    }
}

/// What a rate limit is counted per.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateKey {
    /// One quota for everyone.
    Global,
    /// A client address (IPv6 already cut to its group prefix).
    Ip(IpAddr),
    /// Anything else: a subject, an API key id, a namespace, a tool, a header.
    Text(Arc<str>),
}

/// A store's answer for one request: whether it is allowed, and what is
/// left of the key's allowance after it (what the rate-limit headers say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allowance {
    /// Whether the request may go on.
    pub allowed: bool,
    /// The quota's burst size (the `q` of `RateLimit-Policy`).
    pub limit: u32,
    /// Requests left right now, after this one (the `r` of `RateLimit`).
    pub remaining: u32,
    /// Until the allowance is full again (the `t` of `RateLimit`).
    pub reset_after: Duration,
    /// For a refusal: until one more request would be allowed
    /// (`Retry-After`, rounded up to whole seconds).
    pub retry_after: Option<Duration>,
}

/// Where quotas are kept: in memory, or shared (Redis).
pub trait Store: Send + Sync + 'static {
    /// Counts one request for `key` against `quota`: answered now, or after
    /// a round trip ([`NowOrLater::Later`]); the future never fails: a store
    /// that cannot reach its backend answers by its failure policy.
    fn check(&self, key: &RateKey, quota: &Quota) -> NowOrLater<Allowance>;
}
