//! [`SessionBindingLayer`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_layer::Layer;

use super::service::SessionBinding;
use super::table::{Clock, SessionTable};
use crate::reject::{DefaultResponder, Respond};

/// The default [`SessionBindingLayer::max_sessions`](SessionBindingLayer::max_sessions).
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// The default [`SessionBindingLayer::idle_timeout`](SessionBindingLayer::idle_timeout): one hour.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Binds each MCP session to the principal that opened it, and answers
/// anyone else as if the session did not exist: `404`
/// `session_not_found`, without calling the server. The [module
/// docs](super) give the rules (binding, refusing, ending, memory).
///
/// Place it after the authentication layer (so that a
/// [`Principal`](crate::principal::Principal) is in the request extensions) and before
/// the MCP service. Clones of the layer, and the services it makes, share
/// one table; see [`sessions`](Self::sessions) for its size.
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use tower::{Service, ServiceBuilder, ServiceExt};
/// use tower_warden::mcp::SessionBindingLayer;
/// use tower_warden::principal::{AuthMethod, Principal};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Stands in for the MCP server: every request without a session opens one.
/// let server = tower::service_fn(|request: Request<()>| async move {
///     let mut response = Response::new(());
///     if !request.headers().contains_key("mcp-session-id") {
///         response.headers_mut().insert("mcp-session-id", "s-1".parse().unwrap());
///     }
///     Ok::<_, std::convert::Infallible>(response)
/// });
/// let mut service = ServiceBuilder::new()
///     .layer(SessionBindingLayer::new())
///     .service(server);
///
/// let as_user = |user: &str, session: Option<&str>| {
///     let mut request = Request::post("/mcp");
///     if let Some(session) = session {
///         request = request.header("mcp-session-id", session);
///     }
///     let mut request = request.body(()).unwrap();
///     request.extensions_mut().insert(Principal::builder(user, AuthMethod::Jwt).build());
///     request
/// };
///
/// // alice initializes: the session is hers.
/// let response = service.ready().await?.call(as_user("alice", None)).await?;
/// assert_eq!(response.headers()["mcp-session-id"], "s-1");
/// let response = service.ready().await?.call(as_user("alice", Some("s-1"))).await?;
/// assert_eq!(response.status(), StatusCode::OK);
///
/// // bob presents alice's session id: to him it does not exist.
/// let response = service.ready().await?.call(as_user("bob", Some("s-1"))).await?;
/// assert_eq!(response.status(), StatusCode::NOT_FOUND);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct SessionBindingLayer<R = DefaultResponder> {
    table: SessionTable,
    clock: Clock,
    responder: R,
}

impl<R: Clone> Clone for SessionBindingLayer<R> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
            clock: Arc::clone(&self.clock),
            responder: self.responder.clone(),
        }
    }
}

impl<R: fmt::Debug> fmt::Debug for SessionBindingLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBindingLayer")
            .field("sessions", &self.table)
            .field("responder", &self.responder)
            .finish_non_exhaustive()
    }
}

impl Default for SessionBindingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionBindingLayer {
    /// A layer with an empty table of at most 100 000 bindings, a one-hour
    /// idle timeout and the system clock.
    pub fn new() -> Self {
        let clock: Clock = Arc::new(Instant::now);
        Self {
            table: SessionTable::new(
                DEFAULT_MAX_SESSIONS,
                DEFAULT_IDLE_TIMEOUT,
                Arc::clone(&clock),
            ),
            clock,
            responder: DefaultResponder,
        }
    }
}

impl<R> SessionBindingLayer<R> {
    /// The most bindings held at once (at least 1); when full, a new
    /// session evicts the least recently used binding.
    ///
    /// Like every builder method, this starts a new, empty table: configure
    /// the layer before cloning it or taking [`sessions`](Self::sessions).
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.table = SessionTable::new(max, self.table.idle_timeout(), Arc::clone(&self.clock));
        self
    }

    /// How long a binding lives without a request before its session is
    /// answered 404.
    ///
    /// Starts a new, empty table, as [`max_sessions`](Self::max_sessions).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.table = SessionTable::new(self.table.max_sessions(), timeout, Arc::clone(&self.clock));
        self
    }

    /// Reads the time from `clock` instead of [`Instant::now`]: a test
    /// clock, or `|| tokio::time::Instant::now().into_std()` to follow
    /// tokio's (pausable) time.
    ///
    /// Starts a new, empty table, as [`max_sessions`](Self::max_sessions).
    pub fn clock<C>(mut self, clock: C) -> Self
    where
        C: Fn() -> Instant + Send + Sync + 'static,
    {
        self.clock = Arc::new(clock);
        self.table = SessionTable::new(
            self.table.max_sessions(),
            self.table.idle_timeout(),
            Arc::clone(&self.clock),
        );
        self
    }

    /// Answers refusals with `responder` instead of the default problem
    /// JSON (for example, to mimic the MCP server's own 404 body). Keeps
    /// the table.
    pub fn responder<R2: Respond>(self, responder: R2) -> SessionBindingLayer<R2> {
        SessionBindingLayer {
            table: self.table,
            clock: self.clock,
            responder,
        }
    }

    /// A handle on the bindings table, shared with every clone of this
    /// layer and every service it makes.
    #[must_use]
    pub fn sessions(&self) -> SessionTable {
        self.table.clone()
    }
}

impl SessionBinding<(), DefaultResponder> {
    /// The layer that makes this service; see [`SessionBindingLayer::new`].
    pub fn layer() -> SessionBindingLayer {
        SessionBindingLayer::new()
    }
}

impl<S, R: Clone> Layer<S> for SessionBindingLayer<R> {
    type Service = SessionBinding<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionBinding::new(inner, self.table.clone(), self.responder.clone())
    }
}
