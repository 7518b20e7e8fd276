//! [`RateLimitLayer`] and its shared configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use tower_layer::Layer;

use super::key::KeyBy;
use super::memory::MemoryStore;
use super::service::RateLimit;
use super::store::{Decision, Quota, Store};
use crate::reject::{DefaultResponder, Reason, Rejection, Respond};

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

pub(crate) struct Config {
    pub(crate) quota: Quota,
    pub(crate) key: KeyBy,
    pub(crate) store: Arc<dyn Store>,
    headers: bool,
    legacy: bool,
    name: String,
    policy: HeaderValue,
}

impl Config {
    /// Adds the rate-limit headers for `decision` to `headers`. Stacked
    /// layers each append their own `RateLimit` / `RateLimit-Policy` item;
    /// the legacy headers keep the most restrictive layer's values.
    pub(crate) fn write_headers(&self, decision: &Decision, headers: &mut HeaderMap) {
        if self.headers {
            headers.append(RATELIMIT_POLICY, self.policy.clone());
            let value = format!(
                "\"{}\";r={};t={}",
                self.name,
                decision.remaining,
                ceil_secs(decision.reset_after)
            );
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.append(RATELIMIT, value);
            }
        }
        if self.legacy {
            let tighter = headers
                .get(&X_REMAINING)
                .and_then(|v| v.to_str().ok()?.parse::<u32>().ok())
                .is_none_or(|existing| decision.remaining < existing);
            if tighter {
                headers.insert(X_LIMIT, HeaderValue::from(decision.limit));
                headers.insert(X_REMAINING, HeaderValue::from(decision.remaining));
                headers.insert(X_RESET, HeaderValue::from(ceil_secs(decision.reset_after)));
            }
        }
    }

    pub(crate) fn rejection(&self, decision: &Decision) -> Rejection {
        let retry = decision.retry_after.map_or(1, ceil_secs).max(1);
        let mut headers = HeaderMap::new();
        self.write_headers(decision, &mut headers);
        let mut rejection =
            Rejection::new(Reason::RateLimited).with_header(RETRY_AFTER, HeaderValue::from(retry));
        for (name, value) in &headers {
            rejection = rejection.with_header(name.clone(), value.clone());
        }
        rejection
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A structured-field string: printable ASCII, `"` and `\` escaped.
fn sf_string(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out
}

/// Counts requests per key against a GCRA [`Quota`] and refuses the excess
/// with 429 `rate_limited` (gRPC `RESOURCE_EXHAUSTED`) and `Retry-After`.
///
/// Clones share the store. See the [module docs](super) for an example.
#[must_use]
pub struct RateLimitLayer<R = DefaultResponder> {
    config: Arc<Config>,
    responder: R,
}

impl<R: Clone> Clone for RateLimitLayer<R> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            responder: self.responder.clone(),
        }
    }
}

impl<R> fmt::Debug for RateLimitLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("quota", &self.config.quota)
            .field("key", &self.config.key)
            .field("policy", &self.config.name)
            .field("headers", &self.config.headers)
            .field("legacy_headers", &self.config.legacy)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// `quota` per `key`, kept in `store`.
    pub fn new(quota: Quota, key: KeyBy, store: Arc<dyn Store>) -> Self {
        let mut layer = Self {
            config: Arc::new(Config {
                quota,
                key,
                store,
                headers: true,
                legacy: false,
                name: String::new(),
                policy: HeaderValue::from_static(""),
            }),
            responder: DefaultResponder,
        };
        layer = layer.policy_name("default");
        layer
    }

    /// `quota` per `key`, kept in a fresh [`MemoryStore`] of
    /// [`DEFAULT_MAX_KEYS`](super::DEFAULT_MAX_KEYS) keys.
    pub fn memory(quota: Quota, key: KeyBy) -> Self {
        Self::new(quota, key, Arc::new(MemoryStore::new()))
    }
}

impl<R> RateLimitLayer<R> {
    fn config_mut(&mut self) -> &mut Config {
        if Arc::get_mut(&mut self.config).is_none() {
            let c = &self.config;
            self.config = Arc::new(Config {
                quota: c.quota,
                key: c.key.clone(),
                store: Arc::clone(&c.store),
                headers: c.headers,
                legacy: c.legacy,
                name: c.name.clone(),
                policy: c.policy.clone(),
            });
        }
        Arc::get_mut(&mut self.config).expect("just made unique")
    }

    /// Whether responses carry `RateLimit-Policy` and `RateLimit` (on by
    /// default).
    pub fn headers(mut self, on: bool) -> Self {
        self.config_mut().headers = on;
        self
    }

    /// Whether responses also carry `X-RateLimit-Limit`, `-Remaining` and
    /// `-Reset` (seconds until the allowance is full; off by default).
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.config_mut().legacy = on;
        self
    }

    /// The policy name in the headers (`default` unless set).
    pub fn policy_name(mut self, name: &str) -> Self {
        let config = self.config_mut();
        config.name = sf_string(name);
        let policy = format!(
            "\"{}\";q={};w={}",
            config.name,
            config.quota.burst(),
            ceil_secs(config.quota.window())
        );
        config.policy =
            HeaderValue::try_from(policy).unwrap_or_else(|_| HeaderValue::from_static(""));
        self
    }

    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> RateLimitLayer<R2> {
        RateLimitLayer {
            config: self.config,
            responder,
        }
    }
}

impl<S, R: Clone> Layer<S> for RateLimitLayer<R> {
    type Service = RateLimit<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.config), self.responder.clone())
    }
}
