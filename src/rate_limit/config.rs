//! The configuration a [`RateLimitLayer`](super::RateLimitLayer) shares
//! with its services: the key, the store, the limits and how they are
//! written into response headers.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::key::KeyBy;
use super::store::{Allowance, Quota, RateKey, Store};
use crate::principal::McpCall;
use crate::reject::{Reason, Rejection};
use crate::tool_rules::ToolRules;

/// `RateLimit-Policy` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// One quota and how it is named in the headers.
pub(crate) struct Limit {
    pub(crate) quota: Quota,
    pub(super) name: String,
    pub(super) policy: HeaderValue,
    pub(super) decisions: crate::telemetry::Decisions,
}

impl Limit {
    /// The `RateLimit` item of `decision`: `"name";r=<remaining>;t=<seconds>`,
    /// written on the stack (this runs for every admitted request) and
    /// handed to `then`.
    fn with_item<T>(&self, decision: &Allowance, then: impl FnOnce(&[u8]) -> T) -> T {
        let (mut r, mut t) = ([0u8; 20], [0u8; 20]);
        let remaining = decimal(&mut r, u64::from(decision.remaining));
        let reset = decimal(&mut t, ceil_secs(decision.reset_after));
        let parts: [&[u8]; 6] = [
            b"\"",
            self.name.as_bytes(),
            b"\";r=",
            remaining,
            b";t=",
            reset,
        ];
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        let mut stack = [0u8; 96];
        let mut heap = Vec::new();
        let buf = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap[..]
        };
        let mut at = 0;
        for part in parts {
            buf[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        then(buf)
    }

    pub(super) fn new(quota: Quota, name: &str) -> Self {
        let name = sf_string(name);
        let policy = format!(
            "\"{name}\";q={};w={}",
            quota.burst(),
            ceil_secs(quota.window())
        );
        let policy = HeaderValue::try_from(policy).unwrap_or_else(|_| HeaderValue::from_static(""));
        Self {
            quota,
            name,
            policy,
            decisions: crate::telemetry::Decisions::default(),
        }
    }
}

pub(crate) struct Config {
    pub(crate) key: KeyBy,
    pub(crate) store: Arc<dyn Store>,
    /// One limit, or one per tool rule (in the rules' order).
    pub(super) limits: Vec<Limit>,
    /// Per-tool mode: the tool rules (`MCP_TOOL_RATE_LIMITS` keys); a
    /// rule's place in their order is its index into `limits`.
    pub(super) tools: Option<ToolRules<Quota>>,
    pub(super) headers: bool,
    pub(super) legacy: bool,
}

impl Config {
    /// The key of `request` and the limit it is counted against, if any.
    #[inline]
    pub(crate) fn select<B>(&self, request: &Request<B>) -> Option<(RateKey, usize)> {
        let Some(tools) = &self.tools else {
            return self.key.extract(request).map(|key| (key, 0));
        };
        let tool = request.extensions().get::<McpCall>()?.tool()?;
        // Counted per rule: every name a rule matches (`*.search` on any
        // connection's `search`) draws on one allowance.
        let (rule, index) = tools.index_of(tool)?;
        let per = self.key.extract(request)?;
        Some((tool_key(rule, &per), index))
    }

    /// `(policy name, quota)` of each limit, for `Debug`.
    pub(crate) fn limits_debug(&self) -> Vec<(&str, &Quota)> {
        self.limits
            .iter()
            .map(|l| (l.name.as_str(), &l.quota))
            .collect()
    }

    /// Reports one decision under `limit` to the metrics.
    #[inline]
    pub(crate) fn record(&self, limit: usize, allowed: bool) {
        let limit = &self.limits[limit];
        limit.decisions.record(&limit.name, allowed);
    }

    #[inline]
    pub(crate) fn quota(&self, limit: usize) -> &Quota {
        &self.limits[limit].quota
    }

    /// Adds the rate-limit headers for `decision` under `limit` to
    /// `headers`. Stacked layers each append their own `RateLimit` /
    /// `RateLimit-Policy` item; the legacy headers keep the most restrictive
    /// layer's values.
    pub(crate) fn write_headers(
        &self,
        limit: usize,
        decision: &Allowance,
        headers: &mut HeaderMap,
    ) {
        let limit = &self.limits[limit];
        if self.headers {
            headers.append(RATELIMIT_POLICY, limit.policy.clone());
            limit.with_item(decision, |item| {
                if let Ok(value) = HeaderValue::from_bytes(item) {
                    headers.append(RATELIMIT, value);
                }
            });
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

    pub(crate) fn rejection(&self, limit: usize, decision: &Allowance) -> Rejection {
        let retry = decision.retry_after.map_or(1, ceil_secs).max(1);
        let mut headers = HeaderMap::new();
        self.write_headers(limit, decision, &mut headers);
        let mut rejection =
            Rejection::new(Reason::RateLimited).with_header(RETRY_AFTER, HeaderValue::from(retry));
        for (name, value) in &headers {
            rejection = rejection.with_header(name.clone(), value.clone());
        }
        rejection
    }
}

/// The key of one tool rule's allowance for one `per` key:
/// `tool:<rule>|<per>`.
fn tool_key(tool: &str, per: &RateKey) -> RateKey {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(6 + tool.len() + 40);
    s.push_str("tool:");
    s.push_str(tool);
    s.push('|');
    match per {
        RateKey::Global => {}
        RateKey::Ip(ip) => {
            let _ = write!(s, "ip:{ip}");
        }
        RateKey::Text(text) => s.push_str(text),
    }
    RateKey::Text(s.into())
}

/// `n` in decimal, written at the end of `digits`.
fn decimal(digits: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[start..]
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
