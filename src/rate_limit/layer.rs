//! [`RateLimitLayer`].

use std::fmt;
use std::sync::Arc;

use http::Request;
use tower_layer::Layer;

use super::config::{Config, Limit};
use super::key::KeyBy;
use super::memory::MemoryStore;
use super::store::{Allowance, Quota, Store};
use crate::guard::AsyncGuard;
use crate::reject::{DefaultResponder, Rejection, Respond};
use crate::tool_rules::ToolRules;

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
    /// The tool comes from the [`McpCall`](crate::principal::McpCall) extension, which
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
                        decisions: crate::telemetry::Decisions::default(),
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
    /// ([`Principal`](crate::principal::Principal), [`ClientIp`](crate::client_ip::ClientIp),
    /// [`McpCall`](crate::principal::McpCall)) choose the key and, per tool, the limit.
    ///
    /// Resolves to `None` when nothing is counted (no key, or a tool with
    /// no quota), otherwise to the [`Allowance`]; a refused decision
    /// carries `retry_after`. Decisions are reported to the metrics like
    /// the layer's own. The future does not borrow `request`.
    pub fn check<B>(
        &self,
        request: &Request<B>,
    ) -> impl Future<Output = Option<Allowance>> + Send + 'static {
        let selected = self.config.select(request);
        let config = Arc::clone(&self.config);
        async move {
            let (key, limit) = selected?;
            let decision = config
                .store
                .check(&key, config.quota(limit))
                .resolve()
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
    #[cfg_attr(not(feature = "stack"), allow(dead_code))] // the stack's only
    pub(crate) fn check_refusal<B>(
        &self,
        request: &Request<B>,
    ) -> impl Future<Output = Result<(), (Allowance, Rejection)>> + Send + 'static {
        let selected = self.config.select(request);
        let config = Arc::clone(&self.config);
        async move {
            let Some((key, limit)) = selected else {
                return Ok(());
            };
            let decision = config
                .store
                .check(&key, config.quota(limit))
                .resolve()
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

impl<R> RateLimitLayer<R> {
    /// The configuration the services share.
    #[inline]
    pub(super) fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The responder refusals are rendered with.
    #[inline]
    pub(super) fn responder_ref(&self) -> &R {
        &self.responder
    }
}

// `AsyncGuard<S, Self>` is [`RateLimit`](super::RateLimit).
impl<S, R: Clone> Layer<S> for RateLimitLayer<R> {
    type Service = AsyncGuard<S, Self>;

    fn layer(&self, inner: S) -> Self::Service {
        AsyncGuard::new(inner, self.clone())
    }
}
