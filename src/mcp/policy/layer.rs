//! [`McpPolicyLayer`].

use tower_layer::Layer;

use super::admit::{Config, Limits};
use super::rules::ToolPolicy;
use super::service::McpPolicy;
use crate::reject::{DefaultResponder, Respond};

/// The default cap on buffered request and response bodies.
const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Enforces a [`ToolPolicy`] on MCP `tools/call` requests and filters
/// `tools/list` answers down to the tools the caller may call; see the
/// [module docs](super) for what is read, refused and rewritten.
///
/// Place it inside authentication (it reads the
/// [`Principal`](crate::principal::Principal)) and outside
/// [`JsonRpcErrorsLayer`](crate::mcp::JsonRpcErrorsLayer). The inner service
/// receives a [`RequestBody`](crate::mcp::RequestBody). Clones share the
/// policy.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_warden::mcp::{McpPolicyLayer, ToolPolicy};
///
/// let policy = ToolPolicy::new().require("add", ["tools:add"]);
/// let layers = ServiceBuilder::new().layer(
///     McpPolicyLayer::new(policy)
///         .max_body_bytes(1024 * 1024)
///         .max_response_bytes(1024 * 1024),
/// );
/// # let _ = layers;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct McpPolicyLayer<R = DefaultResponder> {
    pub(super) policy: ToolPolicy,
    pub(super) limits: Limits,
    pub(super) responder: R,
    /// `false`: every request streams through unread (the layer is off).
    pub(super) inspect: bool,
}

impl McpPolicyLayer {
    /// Enforces `policy`, buffering at most 4 MiB of request and of
    /// `tools/list` response.
    pub fn new(policy: ToolPolicy) -> Self {
        Self {
            policy,
            limits: Limits {
                request: DEFAULT_MAX_BYTES,
                response: DEFAULT_MAX_BYTES,
            },
            responder: DefaultResponder,
            inspect: true,
        }
    }

    /// A layer that reads nothing and checks nothing: every request streams
    /// through. For stacks that hold the layer whether or not a policy is
    /// configured.
    #[cfg(feature = "stack")]
    pub(crate) fn pass_through() -> Self {
        Self {
            inspect: false,
            ..Self::new(ToolPolicy::new())
        }
    }
}

impl<R> McpPolicyLayer<R> {
    /// The largest request body read; a longer one is refused with 413
    /// `payload_too_large`.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.limits.request = max;
        self
    }

    /// The most of a `tools/list` answer buffered (for an event stream, of
    /// one event); past it the client gets a JSON-RPC error instead of the
    /// list.
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.limits.response = max;
        self
    }

    /// Answers refusals with `responder` instead of the default.
    pub fn responder<R2: Respond>(self, responder: R2) -> McpPolicyLayer<R2> {
        McpPolicyLayer {
            policy: self.policy,
            limits: self.limits,
            responder,
            inspect: self.inspect,
        }
    }

    /// The policy enforced.
    pub fn policy(&self) -> &ToolPolicy {
        &self.policy
    }
}

impl McpPolicy<(), DefaultResponder> {
    /// The layer that enforces `policy`; see [`McpPolicyLayer::new`].
    pub fn layer(policy: ToolPolicy) -> McpPolicyLayer {
        McpPolicyLayer::new(policy)
    }
}

impl<S, R: Clone> Layer<S> for McpPolicyLayer<R> {
    type Service = McpPolicy<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        McpPolicy::new(
            inner,
            Config {
                policy: self.policy.clone(),
                limits: self.limits,
                responder: self.responder.clone(),
                inspect: self.inspect,
            },
        )
    }
}
