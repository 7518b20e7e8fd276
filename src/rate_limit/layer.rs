//! [`RateLimitLayer`] and its shared configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use tower_layer::Layer;

use super::key::KeyBy;
use super::memory::MemoryStore;
use super::service::RateLimit;
use super::store::{Decision, Quota, RateKey, Store};
use crate::principal::McpCall;
use crate::reject::{DefaultResponder, Reason, Rejection, Respond};
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
    name: String,
    policy: HeaderValue,
    decisions: crate::observe::Decisions,
}

impl Limit {
    fn new(quota: Quota, name: &str) -> Self {
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
            decisions: crate::observe::Decisions::default(),
        }
    }
}

pub(crate) struct Config {
    pub(crate) key: KeyBy,
    pub(crate) store: Arc<dyn Store>,
    /// One limit, or one per tool rule (in the rules' order).
    limits: Vec<Limit>,
    /// Per-tool mode: the tool rules (`MCP_TOOL_RATE_LIMITS` keys); a
    /// rule's place in their order is its index into `limits`.
    tools: Option<ToolRules<Quota>>,
    headers: bool,
    legacy: bool,
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
    pub(crate) fn write_headers(&self, limit: usize, decision: &Decision, headers: &mut HeaderMap) {
        let limit = &self.limits[limit];
        if self.headers {
            headers.append(RATELIMIT_POLICY, limit.policy.clone());
            // `"name";r=<remaining>;t=<seconds>`, without the formatting
            // machinery: this runs for every admitted request.
            let mut value = Vec::with_capacity(limit.name.len() + 32);
            value.push(b'"');
            value.extend_from_slice(limit.name.as_bytes());
            value.extend_from_slice(b"\";r=");
            push_decimal(&mut value, u64::from(decision.remaining));
            value.extend_from_slice(b";t=");
            push_decimal(&mut value, ceil_secs(decision.reset_after));
            if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
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

    pub(crate) fn rejection(&self, limit: usize, decision: &Decision) -> Rejection {
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

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
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
            .field("limits", &self.config.limits_debug())
            .field("key", &self.config.key)
            .field("headers", &self.config.headers)
            .field("legacy_headers", &self.config.legacy)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// `quota` per `key`, kept in `store`.
    pub fn new(quota: Quota, key: KeyBy, store: Arc<dyn Store>) -> Self {
        Self::with_limits(vec![Limit::new(quota, "default")], None, key, store)
    }

    /// Per-tool quotas: each MCP `tools/call` of a listed tool is counted
    /// against that tool's quota, separately for each `per` key (for
    /// example [`KeyBy::Subject`]: every caller gets its own allowance of
    /// each tool; [`KeyBy::Global`]: one allowance per tool for everyone).
    /// Other requests, and calls of unlisted tools, pass uncounted.
    ///
    /// Tools are named by [`ToolRules`] keys: a name, `*.<name>` (that
    /// name behind any server name, as the gateway names an upstream's
    /// tools `<server_name>.<tool>`), or `*` (every tool no other key
    /// matches); the exact name wins over `*.<name>`, which wins over `*`.
    /// The allowance is the **rule's**: every tool a rule matches draws on
    /// it, so a tool reached under another name is still counted there.
    ///
    /// The tool comes from the [`McpCall`] extension, which
    /// [`McpPolicyLayer`](crate::mcp::McpPolicyLayer) leaves: put it in
    /// front (with an empty [`ToolPolicy`](crate::mcp::ToolPolicy) if you
    /// need no scopes). Each rule's headers carry its key as the policy
    /// name.
    pub fn per_tool<I, T>(tools: I, per: KeyBy, store: Arc<dyn Store>) -> Self
    where
        I: IntoIterator<Item = (T, Quota)>,
        T: Into<String>,
    {
        // A tool listed twice keeps its last quota.
        let mut rules = ToolRules::new();
        for (tool, quota) in tools {
            rules.insert(tool, quota);
        }
        let limits = rules
            .iter()
            .map(|(rule, quota)| Limit::new(*quota, rule))
            .collect();
        Self::with_limits(limits, Some(rules), per, store)
    }

    fn with_limits(
        limits: Vec<Limit>,
        tools: Option<ToolRules<Quota>>,
        key: KeyBy,
        store: Arc<dyn Store>,
    ) -> Self {
        Self {
            config: Arc::new(Config {
                key,
                store,
                limits,
                tools,
                headers: true,
                legacy: false,
            }),
            responder: DefaultResponder,
        }
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
                key: c.key.clone(),
                store: Arc::clone(&c.store),
                limits: c
                    .limits
                    .iter()
                    .map(|l| Limit {
                        quota: l.quota,
                        name: l.name.clone(),
                        policy: l.policy.clone(),
                        decisions: crate::observe::Decisions::default(),
                    })
                    .collect(),
                tools: c.tools.clone(),
                headers: c.headers,
                legacy: c.legacy,
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

    /// The policy name in the headers (`default` unless set). Per-tool
    /// layers name each policy after its tool and ignore this.
    pub fn policy_name(mut self, name: &str) -> Self {
        let config = self.config_mut();
        if config.tools.is_none() {
            for limit in &mut config.limits {
                *limit = Limit::new(limit.quota, name);
            }
        }
        self
    }

    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> RateLimitLayer<R2> {
        RateLimitLayer {
            config: self.config,
            responder,
        }
    }

    /// Counts one message that does not come through the layer as an
    /// HTTP request — a JSON-RPC message on a WebSocket, say — against the
    /// same allowance, as if `request` had come through: its extensions
    /// ([`Principal`](crate::Principal), [`ClientIp`](crate::client_ip::ClientIp),
    /// [`McpCall`]) choose the key and, per tool, the limit.
    ///
    /// Resolves to `None` when nothing is counted (no key, or a tool with
    /// no quota), otherwise to the [`Decision`]; a refused decision
    /// carries `retry_after`. Decisions are reported to the metrics like
    /// the layer's own. The future does not borrow `request`.
    pub fn check<B>(
        &self,
        request: &Request<B>,
    ) -> impl Future<Output = Option<Decision>> + Send + 'static {
        let selected = self.config.select(request);
        let config = Arc::clone(&self.config);
        async move {
            let (key, limit) = selected?;
            let decision = config
                .store
                .check(&key, config.quota(limit))
                .decision()
                .await;
            config.record(limit, decision.allowed);
            Some(decision)
        }
    }
}

impl<R> RateLimitLayer<R> {
    /// [`check`](Self::check), and for a refusal the 429 `rate_limited`
    /// answer the layer would send (`Retry-After` and the rate-limit
    /// headers included).
    pub(crate) fn check_refusal<B>(
        &self,
        request: &Request<B>,
    ) -> impl Future<Output = Result<(), (Decision, Rejection)>> + Send + 'static {
        let selected = self.config.select(request);
        let config = Arc::clone(&self.config);
        async move {
            let Some((key, limit)) = selected else {
                return Ok(());
            };
            let decision = config
                .store
                .check(&key, config.quota(limit))
                .decision()
                .await;
            config.record(limit, decision.allowed);
            if decision.allowed {
                Ok(())
            } else {
                let rejection = config.rejection(limit, &decision);
                Err((decision, rejection))
            }
        }
    }
}

impl<S, R: Clone> Layer<S> for RateLimitLayer<R> {
    type Service = RateLimit<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.config), self.responder.clone())
    }
}
