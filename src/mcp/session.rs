//! Binds MCP sessions to the principal that opened them.
//!
//! The MCP Streamable HTTP transport identifies a session by the
//! `Mcp-Session-Id` header, and the specification is explicit that a session
//! is never authentication. An MCP SDK's session manager (rmcp's, for one)
//! serves whoever presents a valid id, so a leaked or guessed id lets
//! principal B act in principal A's session. [`SessionBindingLayer`] closes
//! that gap; see its docs for the rules and the example.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::audit;
use crate::body::ResponseBody;
use crate::guard;
use crate::principal::{AuthMethod, Principal};
use crate::reject::{self, DefaultResponder, Reason, Rejection, Respond};

/// The `Mcp-Session-Id` header of the MCP Streamable HTTP transport.
pub const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// The default [`SessionBindingLayer::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// The default [`SessionBindingLayer::idle_timeout`]: one hour.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Tables at least this large are split into [`SHARDS`] locks.
const SHARDED_FROM: usize = 4096;
/// The number of shards of a large table (a power of two).
const SHARDS: usize = 16;
/// The most expired bindings one operation sweeps from its shard.
const SWEEP_PER_OPERATION: usize = 8;

/// The source of time of a [`SessionBindingLayer`].
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Who a session belongs to: the parts of a [`Principal`] that survive a
/// token refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Owner {
    method: AuthMethod,
    subject: Box<str>,
    namespace: Option<Box<str>>,
}

/// The identity of a request's caller, borrowed: a request without a
/// [`Principal`] is the anonymous identity.
#[derive(Clone, Copy)]
pub(super) struct Caller<'a> {
    method: AuthMethod,
    subject: &'a str,
    namespace: Option<&'a str>,
}

impl Owner {
    /// The owner as text for a shared store: a JSON array of method,
    /// namespace and subject (no separator can be forged).
    pub(super) fn to_text(&self) -> String {
        serde_json::json!([self.method.as_str(), self.namespace, self.subject]).to_string()
    }

    /// Reads [`to_text`](Self::to_text)'s form; `None` for anything else.
    pub(super) fn from_text(text: &str) -> Option<Self> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let [method, namespace, subject] = value.as_array()?.as_slice() else {
            return None;
        };
        let method = match method.as_str()? {
            "jwt" => AuthMethod::Jwt,
            "api_key" => AuthMethod::ApiKey,
            "anonymous" => AuthMethod::Anonymous,
            _ => return None,
        };
        let namespace = match namespace {
            serde_json::Value::Null => None,
            other => Some(other.as_str()?.into()),
        };
        Some(Self {
            method,
            subject: subject.as_str()?.into(),
            namespace,
        })
    }
}

impl<'a> Caller<'a> {
    pub(super) fn of(principal: Option<&'a Principal>) -> Self {
        match principal {
            Some(p) => Self {
                method: p.method(),
                subject: p.subject(),
                namespace: p.namespace(),
            },
            None => Self {
                method: AuthMethod::Anonymous,
                subject: "anonymous",
                namespace: None,
            },
        }
    }

    fn owns(self, owner: &Owner) -> bool {
        self.method == owner.method
            && self.subject == &*owner.subject
            && self.namespace == owner.namespace.as_deref()
    }

    pub(super) fn to_owner(self) -> Owner {
        Owner {
            method: self.method,
            subject: self.subject.into(),
            namespace: self.namespace.map(Into::into),
        }
    }
}

struct Entry {
    owner: Owner,
    last_seen: Instant,
    /// This entry's key in [`Shard::order`].
    tick: u64,
}

/// One lock's worth of bindings, with their recency order.
#[derive(Default)]
struct Shard {
    map: HashMap<Arc<str>, Entry>,
    /// Least recently used first: `tick → session id`.
    order: BTreeMap<u64, Arc<str>>,
    tick: u64,
}

impl Shard {
    fn next_tick(&mut self) -> u64 {
        self.tick = self.tick.wrapping_add(1);
        self.tick
    }

    /// Removes up to `limit` of the least recently used bindings that have
    /// been idle for `idle` or longer.
    fn sweep(&mut self, now: Instant, idle: Duration, limit: usize) {
        for _ in 0..limit {
            let Some((_, id)) = self.order.first_key_value() else {
                return;
            };
            let expired = self
                .map
                .get(id)
                .is_none_or(|entry| now.saturating_duration_since(entry.last_seen) >= idle);
            if !expired {
                return;
            }
            if let Some((_, id)) = self.order.pop_first() {
                self.map.remove(&id);
            }
        }
    }

    fn remove(&mut self, id: &str) -> bool {
        match self.map.remove(id) {
            Some(entry) => {
                self.order.remove(&entry.tick);
                true
            }
            None => false,
        }
    }

    /// Binds `id` to `owner`, evicting the least recently used binding when
    /// the shard holds `capacity` already. Returns whether one was evicted.
    fn bind(&mut self, id: &str, owner: Owner, now: Instant, capacity: usize) -> bool {
        let tick = self.next_tick();
        if let Some(entry) = self.map.get_mut(id) {
            let old = std::mem::replace(&mut entry.tick, tick);
            entry.owner = owner;
            entry.last_seen = now;
            if let Some(key) = self.order.remove(&old) {
                self.order.insert(tick, key);
            }
            return false;
        }
        let mut evicted = false;
        while self.map.len() >= capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
            evicted = true;
        }
        let key: Arc<str> = Arc::from(id);
        self.order.insert(tick, Arc::clone(&key));
        self.map.insert(
            key,
            Entry {
                owner,
                last_seen: now,
                tick,
            },
        );
        evicted
    }
}

/// What the table says about a presented session id.
enum Lookup {
    /// Bound to this caller; its idle timer was refreshed.
    Owner(Arc<str>),
    /// Bound to someone else.
    Other,
    /// Not bound: never issued, evicted, expired or deleted.
    Unknown,
}

pub(super) struct Table {
    shards: Box<[Mutex<Shard>]>,
    /// The most bindings each shard holds.
    shard_capacity: usize,
    max_sessions: usize,
    idle_timeout: Duration,
    clock: Clock,
    /// Picks a session id's shard.
    hasher: std::collections::hash_map::RandomState,
    /// Keys the fingerprints that stand for session ids in logs.
    fingerprints: std::collections::hash_map::RandomState,
}

impl Table {
    fn new(max_sessions: usize, idle_timeout: Duration, clock: Clock) -> Self {
        let max_sessions = max_sessions.max(1);
        let shards = if max_sessions >= SHARDED_FROM {
            SHARDS
        } else {
            1
        };
        Self {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            shard_capacity: max_sessions / shards,
            max_sessions,
            idle_timeout,
            clock,
            hasher: Default::default(),
            fingerprints: Default::default(),
        }
    }

    fn shard(&self, id: &str) -> MutexGuard<'_, Shard> {
        // `shards.len()` is a power of two; the low bits pick the shard.
        let index = (self.hasher.hash_one(id) as usize) & (self.shards.len() - 1);
        // A panic never happens while a shard is locked; should one ever,
        // the shard's data is still consistent enough to use.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    fn lookup(&self, id: &str, caller: Caller<'_>) -> Lookup {
        let now = self.now();
        let idle = self.idle_timeout;
        let mut shard = self.shard(id);
        shard.sweep(now, idle, SWEEP_PER_OPERATION);
        let (key, owned) = match shard.map.get_key_value(id) {
            None => return Lookup::Unknown,
            Some((_, entry)) if now.saturating_duration_since(entry.last_seen) >= idle => {
                shard.remove(id);
                return Lookup::Unknown;
            }
            Some((key, entry)) => (Arc::clone(key), caller.owns(&entry.owner)),
        };
        if !owned {
            return Lookup::Other;
        }
        let tick = shard.next_tick();
        let Shard { map, order, .. } = &mut *shard;
        if let Some(entry) = map.get_mut(id) {
            let old = std::mem::replace(&mut entry.tick, tick);
            entry.last_seen = now;
            order.remove(&old);
            order.insert(tick, Arc::clone(&key));
        }
        Lookup::Owner(key)
    }

    pub(super) fn bind(&self, id: &str, owner: Owner) {
        let now = self.now();
        let mut shard = self.shard(id);
        shard.sweep(now, self.idle_timeout, SWEEP_PER_OPERATION);
        if shard.bind(id, owner, now, self.shard_capacity) {
            tracing::debug!(
                target: "tower_warden",
                max_sessions = self.max_sessions,
                "session table full: the least recently used session binding was evicted"
            );
        }
    }

    pub(super) fn remove(&self, id: &str) {
        self.shard(id).remove(id);
    }

    /// Whether `id` is bound (to anyone) and not expired; changes nothing.
    pub(super) fn knows(&self, id: &str) -> bool {
        let now = self.now();
        self.shard(id)
            .map
            .get(id)
            .is_some_and(|entry| now.saturating_duration_since(entry.last_seen) < self.idle_timeout)
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                shard
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .map
                    .len()
            })
            .sum()
    }

    /// A keyed, per-process fingerprint of `id`, safe to log.
    fn fingerprint(&self, id: &[u8]) -> String {
        format!("{:016x}", self.fingerprints.hash_one(id))
    }
}

/// A handle on the session bindings of a [`SessionBindingLayer`], for
/// metrics. Clones share the table.
#[derive(Clone)]
pub struct SessionTable(pub(super) Arc<Table>);

impl SessionTable {
    fn new(max_sessions: usize, idle_timeout: Duration, clock: Clock) -> Self {
        Self(Arc::new(Table::new(max_sessions, idle_timeout, clock)))
    }

    /// The number of bindings held, including idle ones that have expired
    /// but have not been swept yet. Locks each shard briefly.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no binding is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most bindings held at once.
    #[must_use]
    pub fn max_sessions(&self) -> usize {
        self.0.max_sessions
    }

    /// How long a binding lives without a request.
    #[must_use]
    pub fn idle_timeout(&self) -> Duration {
        self.0.idle_timeout
    }
}

impl fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the session ids.
        f.debug_struct("SessionTable")
            .field("len", &self.len())
            .field("max_sessions", &self.0.max_sessions)
            .field("idle_timeout", &self.0.idle_timeout)
            .field("shards", &self.0.shards.len())
            .finish_non_exhaustive()
    }
}

/// Binds each MCP session to the principal that opened it, and answers
/// anyone else as if the session did not exist.
///
/// Place it after the authentication layer (so that a [`Principal`] is in
/// the request extensions) and before the MCP service.
///
/// * **Binding.** A 2xx response that carries one `Mcp-Session-Id` to a
///   request that carried none (the `initialize`) binds that session id to
///   the caller's identity: the [`AuthMethod`], subject and namespace of its
///   [`Principal`]. Roles, scopes and expiry are not part of it, so a
///   refreshed token for the same subject keeps its sessions. A non-2xx
///   response binds nothing.
/// * **Using.** A request that presents an `Mcp-Session-Id` (a `POST`, the
///   `GET` of the event stream, a `DELETE`) passes only when the session is
///   bound to the caller's identity; that refreshes the binding's idle timer.
/// * **Refusing.** A session bound to someone else, and a session the table
///   does not know (never issued, evicted, expired, deleted, forged, not
///   visible ASCII), are answered the way an MCP server answers an unknown
///   session: **404** (rmcp's `StreamableHttpService` answers
///   `404 Not Found: Session not found`). The answer is a [`Rejection`] with
///   [`Reason::SessionNotFound`] — `session_not_found` problem JSON with the
///   default responder, like every other refusal of this crate; MCP clients
///   look only at the status, read a 404 on a session as "start a new one"
///   and re-initialize. Give the layer a [`responder`](Self::responder) to
///   answer with the server's exact body instead. The inner service is not
///   called: a session the table does not know never reaches the server, so
///   the table **fails closed** — an id issued while this layer was not in
///   front of the server, or before a restart of this process, is refused
///   too.
/// * **Several ids.** A request with more than one `Mcp-Session-Id` header
///   line is refused the same way, 404 without calling the server: the
///   layer would check one id while the server might use another (rmcp
///   reads the first). It is not a 400 because no honest client sends two,
///   and a confused one recovers by re-initializing. One header value is
///   one id, commas included, as the server reads it.
/// * **Audit.** Each refusal is one event on the
///   [audit target](crate::audit) with the reason, the client address and
///   the caller's subject; the session id appears only as a keyed,
///   per-process fingerprint (the same id gives the same fingerprint until
///   the process restarts), never in full.
/// * **Ending.** A 2xx answer to the owner's `DELETE` removes the binding,
///   and so does a 404 from the server for a bound session (the server
///   forgot it first).
/// * **Anonymous callers.** A request without a [`Principal`] has the
///   anonymous identity (`anonymous`, [`AuthMethod::Anonymous`], no
///   namespace), the same as [`Principal::anonymous`]. With authentication
///   switched off every caller is that identity, so the layer then only
///   keeps unknown and expired ids away from the server.
///
/// # Memory
///
/// The table holds at most [`max_sessions`](Self::max_sessions) bindings
/// (100 000 by default). When it is full, binding a new session **evicts
/// the least recently used binding** rather than refusing the new session:
/// the evicted session's next request gets 404 and its client
/// re-initializes, which is safe, whereas refusing would let a burst of
/// sessions make `initialize` fail for everyone. Large tables are split in
/// 16 shards, each with its own lock and 1/16 of the capacity, so least
/// recently used is per shard. Bindings idle for
/// [`idle_timeout`](Self::idle_timeout) (one hour by default) expire: a
/// lookup of an expired binding removes it, and every lookup or binding also
/// sweeps a few expired bindings from its shard, so no background task is
/// needed. Set the idle timeout at least as long as the server keeps an idle
/// session; a long-lived event stream alone does not refresh it.
///
/// Clones of the layer, and the services it makes, share one table; see
/// [`sessions`](Self::sessions) for its size.
///
/// # Example
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

impl<S, R: Clone> Layer<S> for SessionBindingLayer<R> {
    type Service = SessionBinding<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionBinding {
            inner,
            table: self.table.clone(),
            responder: self.responder.clone(),
        }
    }
}

/// The service made by [`SessionBindingLayer`]. Clones share its table.
#[derive(Clone)]
pub struct SessionBinding<S, R = DefaultResponder> {
    inner: S,
    table: SessionTable,
    responder: R,
}

impl<S: fmt::Debug, R: fmt::Debug> fmt::Debug for SessionBinding<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionBinding")
            .field("inner", &self.inner)
            .field("sessions", &self.table)
            .field("responder", &self.responder)
            .finish()
    }
}

impl<S, R> SessionBinding<S, R> {
    /// The bindings table.
    #[must_use]
    pub fn sessions(&self) -> &SessionTable {
        &self.table
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The single session id a request presents.
pub(super) enum Presented<'a> {
    None,
    One(&'a HeaderValue),
    Several,
}

pub(super) fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut values = headers.get_all(MCP_SESSION_ID).iter();
    match (values.next(), values.next()) {
        (None, _) => Presented::None,
        (Some(value), None) => Presented::One(value),
        (Some(_), Some(_)) => Presented::Several,
    }
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for SessionBinding<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Respond,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let principal = request.extensions().get::<Principal>();
        let (detail, presented_id) = match presented(request.headers()) {
            Presented::None => {
                let after = After::Bind {
                    table: Arc::clone(&self.table.0),
                    principal: principal.cloned(),
                };
                return ResponseFuture::inner(self.inner.call(request), after);
            }
            Presented::Several => ("more than one Mcp-Session-Id header was sent", None),
            Presented::One(value) => {
                let lookup = match value.to_str() {
                    Ok(id) => self.table.0.lookup(id, Caller::of(principal)),
                    Err(_) => Lookup::Unknown,
                };
                match lookup {
                    Lookup::Owner(id) => {
                        let after = After::Owned {
                            table: Arc::clone(&self.table.0),
                            id,
                            delete: request.method() == Method::DELETE,
                        };
                        return ResponseFuture::inner(self.inner.call(request), after);
                    }
                    Lookup::Other => ("the session is bound to another principal", Some(value)),
                    Lookup::Unknown => ("unknown or expired session", Some(value)),
                }
            }
        };
        let audit_detail: Cow<'static, str> = match presented_id {
            Some(id) => {
                let fingerprint = self.table.0.fingerprint(id.as_bytes());
                Cow::Owned(format!("{detail} (session fingerprint {fingerprint})"))
            }
            None => Cow::Borrowed(detail),
        };
        audit::denied(
            Reason::SessionNotFound,
            request.extensions(),
            principal.map(Principal::subject),
            principal.and_then(Principal::key_id),
            &audit_detail,
        );
        // The client learns only what an unknown session would tell it.
        let rejection = Rejection::new(Reason::SessionNotFound);
        ResponseFuture::reject(reject::render(&self.responder, rejection, &request))
    }
}

/// What to do with the table once the inner service has answered.
enum After {
    /// The request carried no session id: bind the one a 2xx answer issues
    /// to the caller.
    Bind {
        table: Arc<Table>,
        principal: Option<Principal>,
    },
    /// The request used a session bound to its caller.
    Owned {
        table: Arc<Table>,
        id: Arc<str>,
        delete: bool,
    },
}

impl After {
    fn apply<B>(self, response: &Response<B>) {
        let status = response.status();
        match self {
            Self::Bind { table, principal } => {
                if !status.is_success() {
                    return;
                }
                if let Presented::One(value) = presented(response.headers())
                    && let Ok(id) = value.to_str()
                {
                    table.bind(id, Caller::of(principal.as_ref()).to_owner());
                }
            }
            Self::Owned { table, id, delete } => {
                if (delete && status.is_success()) || status == StatusCode::NOT_FOUND {
                    table.remove(&id);
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`SessionBinding`]: the guard future (inner
    /// service, or a refusal ready at once), then, for admitted requests,
    /// the table update. Never boxed.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: guard::ResponseFuture<F>,
        then: Then,
    }
}

/// What [`ResponseFuture`] does once the guard future has answered.
enum Then {
    /// Update the table from the inner service's answer.
    Apply(After),
    /// A refusal, not answered yet.
    Refuse,
    /// The refusal was answered: polled again, an empty 404 rather than
    /// the guard future's panic.
    Refused,
    /// Nothing left to do.
    Done,
}

impl<F> ResponseFuture<F> {
    fn inner(future: F, after: After) -> Self {
        Self {
            inner: guard::ResponseFuture::inner(future),
            then: Then::Apply(after),
        }
    }

    fn reject(response: Response<Bytes>) -> Self {
        Self {
            inner: guard::ResponseFuture::reject(response),
            then: Then::Refuse,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.then {
            Then::Apply(_) | Then::Done => "inner",
            Then::Refuse | Then::Refused => "reject",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Then::Refused = this.then {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::NOT_FOUND;
            return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
        }
        let response = ready!(this.inner.poll(cx))?;
        match std::mem::replace(this.then, Then::Done) {
            Then::Apply(after) => after.apply(&response),
            Then::Refuse => *this.then = Then::Refused,
            Then::Refused | Then::Done => {}
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests;
