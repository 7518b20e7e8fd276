//! Events the layers report to the [`metrics`](crate::metrics) facade; each
//! function compiles to nothing without the `metrics` feature.

#![allow(dead_code, unused_variables)] // which callers exist depends on the features

/// A circuit breaker's state as a gauge value: 0 closed, 1 half-open, 2 open.
#[inline]
pub(crate) fn breaker_state(breaker: &str, state: &'static str, value: f64) {
    #[cfg(feature = "metrics")]
    {
        use crate::metrics::{BREAKER_STATE, BREAKER_TRANSITIONS};
        ::metrics::gauge!(BREAKER_STATE, "breaker" => breaker.to_owned()).set(value);
        ::metrics::counter!(BREAKER_TRANSITIONS, "breaker" => breaker.to_owned(), "to" => state)
            .increment(1);
    }
}

/// A shared rate-limit store lost or regained its backend.
#[inline]
pub(crate) fn rate_limit_degraded(degraded: bool) {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(crate::metrics::RATE_LIMIT_DEGRADED).set(if degraded { 1.0 } else { 0.0 });
}

/// A JWKS fetch or reload, successful or not.
#[inline]
pub(crate) fn jwks_refresh(ok: bool) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::metrics::JWKS_REFRESHES, "result" => if ok { "ok" } else { "error" })
        .increment(1);
}

/// A lookup in the verified-token cache.
#[inline]
pub(crate) fn token_cache(hit: bool) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(crate::metrics::TOKEN_CACHE, "result" => if hit { "hit" } else { "miss" })
        .increment(1);
}

/// Per-policy rate-limit counters, resolved once (on first use, so after
/// the application installed its recorder).
#[derive(Default)]
pub(crate) struct Decisions {
    #[cfg(feature = "metrics")]
    counters: std::sync::OnceLock<[::metrics::Counter; 2]>,
}

impl Decisions {
    /// One decision of the policy `policy`.
    #[inline]
    pub(crate) fn record(&self, policy: &str, allowed: bool) {
        #[cfg(feature = "metrics")]
        {
            let [allow, limit] = self.counters.get_or_init(|| {
                let name = crate::metrics::RATE_LIMIT_DECISIONS;
                [
                    ::metrics::counter!(name, "policy" => policy.to_owned(), "decision" => "allowed"),
                    ::metrics::counter!(name, "policy" => policy.to_owned(), "decision" => "limited"),
                ]
            });
            if allowed { allow } else { limit }.increment(1);
        }
    }
}
