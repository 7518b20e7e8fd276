//! The session bindings table: who owns each session id, in shards with a
//! recency order, bounded and expiring; and [`SessionTable`], its handle.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::principal::{AuthMethod, Principal};

/// Tables at least this large are split into [`SHARDS`] locks.
pub(super) const SHARDED_FROM: usize = 4096;
/// The number of shards of a large table (a power of two).
pub(super) const SHARDS: usize = 16;
/// The most expired bindings one operation sweeps from its shard.
pub(super) const SWEEP_PER_OPERATION: usize = 8;

/// The source of time of a [`SessionBindingLayer`](crate::mcp::SessionBindingLayer).
pub(super) type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// Who a session belongs to: the parts of a [`Principal`] that survive a
/// token refresh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::mcp) struct Owner {
    method: AuthMethod,
    subject: Box<str>,
    namespace: Option<Box<str>>,
}

/// The identity of a request's caller, borrowed: a request without a
/// [`Principal`] is the anonymous identity.
#[derive(Clone, Copy)]
pub(in crate::mcp) struct Caller<'a> {
    method: AuthMethod,
    subject: &'a str,
    namespace: Option<&'a str>,
}

impl Owner {
    /// The owner as text for a shared store: a JSON array of method,
    /// namespace and subject (no separator can be forged).
    pub(in crate::mcp) fn to_text(&self) -> String {
        serde_json::json!([self.method.as_str(), self.namespace, self.subject]).to_string()
    }

    /// Reads [`to_text`](Self::to_text)'s form; `None` for anything else.
    pub(in crate::mcp) fn from_text(text: &str) -> Option<Self> {
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
    pub(in crate::mcp) fn of(principal: Option<&'a Principal>) -> Self {
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

    pub(in crate::mcp) fn to_owner(self) -> Owner {
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
pub(super) struct Shard {
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
pub(super) enum Lookup {
    /// Bound to this caller; its idle timer was refreshed.
    Owner(Arc<str>),
    /// Bound to someone else.
    Other,
    /// Not bound: never issued, evicted, expired or deleted.
    Unknown,
}

pub(in crate::mcp) struct Table {
    pub(super) shards: Box<[Mutex<Shard>]>,
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
    pub(super) fn new(max_sessions: usize, idle_timeout: Duration, clock: Clock) -> Self {
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

    pub(super) fn lookup(&self, id: &str, caller: Caller<'_>) -> Lookup {
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

    pub(in crate::mcp) fn bind(&self, id: &str, owner: Owner) {
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
    pub(in crate::mcp) fn knows(&self, id: &str) -> bool {
        let now = self.now();
        self.shard(id)
            .map
            .get(id)
            .is_some_and(|entry| now.saturating_duration_since(entry.last_seen) < self.idle_timeout)
    }

    pub(super) fn len(&self) -> usize {
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
    pub(super) fn fingerprint(&self, id: &[u8]) -> String {
        format!("{:016x}", self.fingerprints.hash_one(id))
    }
}

/// A handle on the session bindings of a [`SessionBindingLayer`](crate::mcp::SessionBindingLayer), for
/// metrics. Clones share the table.
#[derive(Clone)]
pub struct SessionTable(pub(in crate::mcp) Arc<Table>);

impl SessionTable {
    pub(super) fn new(max_sessions: usize, idle_timeout: Duration, clock: Clock) -> Self {
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
