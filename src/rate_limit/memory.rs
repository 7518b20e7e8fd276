//! [`MemoryStore`]: governor's GCRA over a bounded, sharded table.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{NotUntil, RateLimiter};

use super::DEFAULT_MAX_KEYS;
use super::store::{Allowance, Quota, RateKey, Store};
use crate::guard::NowOrLater;

const SHARDS: usize = 64;

/// How often each table drops refilled keys by default.
const DEFAULT_SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A bounded in-memory [`Store`]: governor's GCRA per key, at most
/// `max_keys` keys, refilled keys evicted, throttled keys never.
///
/// governor's own keyed store keeps every key it has ever seen until someone
/// calls `retain_recent`, so a caller that rotates addresses or invents API
/// key ids grows it without bound. This store gives governor a state store
/// with a hard cap instead:
///
/// * A key is kept as a 64-bit keyed hash (SipHash with a per-store random
///   key, so callers cannot aim for collisions) beside its 8-byte GCRA
///   state, the theoretical arrival time (TAT), in one of 64 mutex-guarded
///   tables: about 28–35 bytes per key, measured at 10 000 and 1 000 000
///   keys.
/// * A key whose TAT is not after now is back to its full allowance, exactly
///   as if it had never been seen, so dropping it loses nothing. Each table
///   drops such keys every [`sweep_every`](Self::sweep_every) (idle
///   eviction, 10 s by default), and again whenever it is full and a new key
///   arrives.
/// * A throttled key (TAT after now) is **never** dropped: forgetting it
///   would hand its caller a fresh burst.
/// * When a table is full of throttled keys, a new key is not tracked on
///   its own: it is counted against one overflow allowance per quota, shared
///   by every such key, until room frees up. A flood of new keys therefore
///   can neither grow memory past `max_keys` nor reset anyone's quota; its
///   cost falls on new callers during the flood (fail-secure).
///
/// One store can serve several quotas and layers: each quota counts apart.
/// Time comes from `tokio::time::Instant` (so `tokio::time::pause` and
/// `advance` drive it in tests) unless a [`FakeRelativeClock`] is given with
/// [`MemoryStore::with_clock`].
///
/// ```
/// use tower_warden::guard::NowOrLater;
/// use tower_warden::rate_limit::{MemoryStore, Quota, RateKey, Store};
///
/// let store = MemoryStore::with_max_keys(10_000);
/// let quota = Quota::per_minute(2).unwrap();
/// let key = RateKey::Text("alice".into());
/// for allowed in [true, true, false] {
///     let NowOrLater::Now(decision) = store.check(&key, &quota) else { unreachable!() };
///     assert_eq!(decision.allowed, allowed);
/// }
/// assert_eq!(store.len(), 1);
/// ```
pub struct MemoryStore {
    table: Arc<Table>,
    clock: StoreClock,
    hasher: RandomState,
    /// The first quota's limiter, read without a lock.
    first: OnceLock<(Quota, Arc<Limiter>)>,
    lanes: RwLock<Vec<(Quota, Arc<Limiter>)>>,
}

type Limiter = RateLimiter<Probe, Handle, DecisionClock, StateInformationMiddleware>;

thread_local! {
    /// The time of the decision this thread is making, for governor.
    static DECISION_NOW: Cell<u64> = const { Cell::new(0) };
}

/// governor's clock: the time [`MemoryStore`] read for the decision under
/// way on this thread, so each decision reads the real clock once.
#[derive(Clone, Copy, Debug, Default)]
struct DecisionClock;

impl Clock for DecisionClock {
    type Instant = Nanos;

    #[inline]
    fn now(&self) -> Nanos {
        Nanos::new(DECISION_NOW.with(Cell::get))
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_keys", &self.max_keys())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// A store that tracks at most [`DEFAULT_MAX_KEYS`] keys.
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_keys(DEFAULT_MAX_KEYS)
    }

    /// A store that tracks at most `max_keys` keys (at least one per
    /// internal table, 64).
    #[must_use]
    pub fn with_max_keys(max_keys: usize) -> Self {
        let per_shard = (max_keys / SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    map: HashMap::default(),
                    next_sweep: 0,
                    earliest: u64::MAX,
                })
            })
            .collect();
        Self {
            table: Arc::new(Table {
                shards,
                per_shard,
                sweep_every: nanos(DEFAULT_SWEEP_EVERY),
            }),
            clock: StoreClock(TimeSource::Tokio(tokio::time::Instant::now())),
            hasher: RandomState::new(),
            first: OnceLock::new(),
            lanes: RwLock::new(Vec::new()),
        }
    }

    /// Reads time from `clock` instead of `tokio::time::Instant` (for tests
    /// without a runtime).
    #[must_use]
    pub fn with_clock(mut self, clock: FakeRelativeClock) -> Self {
        self.clock = StoreClock(TimeSource::Manual(clock));
        self.first = OnceLock::new();
        self.lanes = RwLock::new(Vec::new());
        self
    }

    /// Drops refilled keys every `every` (per table, on its next use).
    #[must_use]
    pub fn sweep_every(mut self, every: Duration) -> Self {
        if let Some(table) = Arc::get_mut(&mut self.table) {
            table.sweep_every = nanos(every).max(1);
        }
        self
    }

    /// The cap on tracked keys (`max_keys` rounded down to a multiple of 64,
    /// at least 64).
    #[must_use]
    pub fn max_keys(&self) -> usize {
        self.table.per_shard * SHARDS
    }

    /// How many keys are tracked now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Whether no key is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the tables hold on the heap now (buckets and control
    /// bytes), for measuring the cost per key: divide by [`len`](Self::len).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(u64, u64)>() + 1;
        self.table
            .shards
            .iter()
            .map(|s| {
                let shard = lock(s);
                // hashbrown keeps capacity × 8/7 buckets, one control byte
                // each, plus a group of control bytes.
                let buckets = (shard.map.capacity() * 8 / 7).next_power_of_two();
                if shard.map.capacity() == 0 {
                    0
                } else {
                    buckets * bucket + 16
                }
            })
            .sum::<usize>()
            + SHARDS * std::mem::size_of::<Mutex<Shard>>()
    }

    /// Drops every key that is back to its full allowance now.
    pub fn evict_idle(&self) {
        let now = self.clock.now().as_u64();
        for shard in &self.table.shards {
            lock(shard).sweep(now, self.table.sweep_every);
        }
    }

    /// Runs `f` with the limiter of `quota` (built on first use) and its
    /// lane number.
    #[inline]
    fn with_limiter<T>(&self, quota: &Quota, f: impl FnOnce(&Limiter, u32) -> T) -> T {
        if let Some((q, limiter)) = self.first.get()
            && q == quota
        {
            return f(limiter, 0);
        }
        {
            let lanes = self.lanes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(lane) = lanes.iter().position(|(q, _)| q == quota) {
                return f(&lanes[lane].1, lane_number(lane));
            }
        }
        let (limiter, lane) = self.add_lane(quota);
        f(&limiter, lane)
    }

    #[cold]
    fn add_lane(&self, quota: &Quota) -> (Arc<Limiter>, u32) {
        let mut lanes = self.lanes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(lane) = lanes.iter().position(|(q, _)| q == quota) {
            return (Arc::clone(&lanes[lane].1), lane_number(lane));
        }
        let lane = Arc::new(Lane {
            offset: AtomicU64::new(0),
            overflow: Mutex::new(None),
        });
        let handle = Handle {
            table: Arc::clone(&self.table),
            lane: Arc::clone(&lane),
        };
        // governor counts time from the moment the limiter is built, read
        // through `DecisionClock`: set it to now, and make that moment the
        // lane's offset, so stored arrival times are exact.
        let start = self.clock.now().as_u64();
        DECISION_NOW.with(|now| now.set(start));
        let limiter = RateLimiter::<
            Probe,
            Handle,
            DecisionClock,
            governor::middleware::NoOpMiddleware<Nanos>,
        >::new(governor_quota(quota), handle, DecisionClock)
        .with_middleware::<StateInformationMiddleware>();
        lane.offset.store(start, Ordering::Relaxed);
        let limiter = Arc::new(limiter);
        let number = lane_number(lanes.len());
        lanes.push((*quota, Arc::clone(&limiter)));
        if number == 0 {
            let _ = self.first.set((*quota, Arc::clone(&limiter)));
        }
        (limiter, number)
    }

    /// The table key of `key` in `lane`: a keyed hash, fed as few words as
    /// possible (the hash is most of a decision's cost).
    #[inline]
    fn hash(&self, lane: u32, key: &RateKey) -> u64 {
        let mut h = self.hasher.build_hasher();
        match key {
            RateKey::Global => h.write_u64(u64::from(lane)),
            RateKey::Ip(IpAddr::V4(ip)) => {
                h.write_u64(u64::from(lane) << 40 | 1 << 32 | u64::from(ip.to_bits()));
            }
            RateKey::Ip(IpAddr::V6(ip)) => {
                h.write_u64(u64::from(lane) << 40 | 2 << 32);
                h.write_u128(ip.to_bits());
            }
            RateKey::Text(text) => {
                h.write_u64(u64::from(lane) << 40 | 3 << 32);
                h.write(text.as_bytes());
            }
        }
        h.finish()
    }

    fn decide(&self, key: &RateKey, quota: &Quota) -> Allowance {
        self.with_limiter(quota, |limiter, lane| {
            // Read after the limiter exists, so never before its start.
            let now = self.clock.now();
            DECISION_NOW.with(|cell| cell.set(now.as_u64()));
            let probe = Probe {
                hash: self.hash(lane, key),
                now: now.as_u64(),
                tat: Cell::new(now.as_u64()),
            };
            let limit = quota.burst();
            match limiter.check_key(&probe) {
                Ok(snapshot) => Allowance {
                    allowed: true,
                    limit,
                    remaining: snapshot.remaining_burst_capacity().min(limit),
                    reset_after: Duration::from_nanos(probe.tat.get().saturating_sub(probe.now)),
                    retry_after: None,
                },
                Err(not_until) => refusal(&not_until, &probe, limit, now),
            }
        })
    }
}

/// A lane's number (its index; there are never 2^24 quotas).
fn lane_number(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX) & 0x00ff_ffff
}

fn refusal(not_until: &NotUntil<Nanos>, probe: &Probe, limit: u32, now: Nanos) -> Allowance {
    Allowance {
        allowed: false,
        limit,
        remaining: 0,
        reset_after: Duration::from_nanos(probe.tat.get().saturating_sub(probe.now)),
        retry_after: Some(not_until.wait_time_from(now)),
    }
}

impl Store for MemoryStore {
    fn check(&self, key: &RateKey, quota: &Quota) -> NowOrLater<Allowance> {
        NowOrLater::Now(self.decide(key, quota))
    }
}

fn governor_quota(quota: &Quota) -> governor::Quota {
    let burst = NonZeroU32::new(quota.burst()).unwrap_or(NonZeroU32::MIN);
    governor::Quota::with_period(quota.interval())
        .unwrap_or_else(|| governor::Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where the store reads time: nanoseconds since it was built.
#[derive(Clone, Debug)]
enum TimeSource {
    Tokio(tokio::time::Instant),
    Manual(FakeRelativeClock),
}

#[derive(Clone, Debug)]
struct StoreClock(TimeSource);

impl Clock for StoreClock {
    type Instant = Nanos;

    #[inline]
    fn now(&self) -> Nanos {
        match &self.0 {
            TimeSource::Tokio(epoch) => Nanos::new(nanos(
                tokio::time::Instant::now().saturating_duration_since(*epoch),
            )),
            TimeSource::Manual(clock) => clock.now(),
        }
    }
}

/// The table every quota shares: key hash → TAT in nanoseconds since the
/// store was built.
struct Table {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    sweep_every: u64,
}

impl Table {
    #[inline]
    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // Middle bits: hashbrown takes its bucket index from the low bits and
        // its tag from the top seven.
        &self.shards[(hash >> 32) as usize % SHARDS]
    }
}

struct Shard {
    map: HashMap<u64, u64, BuildHasherDefault<Premixed>>,
    next_sweep: u64,
    /// No key refills before this: a sweep before it would find nothing
    /// (so a flood into a full table of throttled keys costs no sweeps).
    earliest: u64,
}

impl Shard {
    /// Drops the keys whose arrival time is not after `now`: their state is
    /// the same as a fresh key's.
    fn sweep(&mut self, now: u64, every: u64) {
        self.next_sweep = now.saturating_add(every);
        if self.earliest > now {
            return;
        }
        let mut earliest = u64::MAX;
        self.map.retain(|_, tat| {
            let keep = *tat > now;
            if keep {
                earliest = earliest.min(*tat);
            }
            keep
        });
        self.earliest = earliest;
    }

    fn insert(&mut self, hash: u64, tat: u64) {
        self.map.insert(hash, tat);
        self.earliest = self.earliest.min(tat);
    }
}

/// One quota's share of the table: where its clock starts, and the
/// allowance new keys share when the table is full.
struct Lane {
    offset: AtomicU64,
    overflow: Mutex<Option<u64>>,
}

/// The state store governor is given, one per quota.
struct Handle {
    table: Arc<Table>,
    lane: Arc<Lane>,
}

/// The key governor is given: the hash, the time of the decision, and a
/// cell for the arrival time the store holds after it.
#[derive(Clone)]
struct Probe {
    hash: u64,
    now: u64,
    tat: Cell<u64>,
}

impl PartialEq for Probe {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}

impl Eq for Probe {}

impl Hash for Probe {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Handle {
    /// Runs governor's update `f` on one stored absolute TAT.
    fn apply<T, F, E>(&self, slot: Option<u64>, probe: &Probe, f: &F) -> Result<(T, u64), E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let offset = self.lane.offset.load(Ordering::Relaxed);
        // A stored TAT not after now means a full allowance: give governor
        // `None`, which it treats the same way.
        let current = slot
            .filter(|tat| *tat > probe.now)
            .map(|tat| Nanos::new(tat.saturating_sub(offset)));
        if let Some(tat) = slot {
            probe.tat.set(tat.max(probe.now));
        }
        let (value, next) = f(current)?;
        let next = next.as_u64().saturating_add(offset);
        probe.tat.set(next);
        Ok((value, next))
    }
}

impl StateStore for Handle {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, key: &Probe, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut shard = lock(self.table.shard(key.hash));
        if key.now >= shard.next_sweep {
            shard.sweep(key.now, self.table.sweep_every);
        }
        if let Some(slot) = shard.map.get_mut(&key.hash) {
            let (value, next) = self.apply(Some(*slot), key, &f)?;
            *slot = next;
            shard.earliest = shard.earliest.min(next);
            return Ok(value);
        }
        if shard.map.len() >= self.table.per_shard {
            shard.sweep(key.now, self.table.sweep_every);
        }
        if shard.map.len() < self.table.per_shard {
            let (value, next) = self.apply(None, key, &f)?;
            shard.insert(key.hash, next);
            return Ok(value);
        }
        drop(shard);
        // Full of throttled keys: count this new key against the shared
        // overflow allowance.
        let mut overflow = lock(&self.lane.overflow);
        let (value, next) = self.apply(*overflow, key, &f)?;
        *overflow = Some(next);
        Ok(value)
    }
}

/// A hasher for keys that are already keyed hashes: passes them through.
#[derive(Default)]
struct Premixed(u64);

impl Hasher for Premixed {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(check: NowOrLater<Allowance>) -> Allowance {
        match check {
            NowOrLater::Now(decision) => decision,
            NowOrLater::Later(_) => panic!("memory store decides at once"),
        }
    }

    fn manual(max_keys: usize) -> (MemoryStore, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            MemoryStore::with_max_keys(max_keys).with_clock(clock.clone()),
            clock,
        )
    }

    fn ip(n: u32) -> RateKey {
        RateKey::Ip(std::net::Ipv4Addr::from(n).into())
    }

    #[test]
    fn burst_then_refusal_then_refill() {
        let (store, clock) = manual(1000);
        let quota = Quota::per_minute(3).unwrap();
        let key = RateKey::Global;
        for remaining in [2, 1, 0] {
            let d = ready(store.check(&key, &quota));
            assert!(d.allowed);
            assert_eq!(d.remaining, remaining);
            assert_eq!(d.limit, 3);
        }
        let d = ready(store.check(&key, &quota));
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_secs(20)));
        assert_eq!(d.reset_after, Duration::from_secs(60));
        clock.advance(Duration::from_secs(20));
        let d = ready(store.check(&key, &quota));
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        clock.advance(Duration::from_secs(60));
        let d = ready(store.check(&key, &quota));
        assert_eq!(d.remaining, 2);
        assert_eq!(d.reset_after, Duration::from_secs(20));
    }

    #[test]
    fn quotas_do_not_share_state() {
        let (store, _) = manual(1000);
        let one = Quota::per_minute(1).unwrap();
        let two = Quota::per_minute(2).unwrap();
        let key = RateKey::Text("k".into());
        assert!(ready(store.check(&key, &one)).allowed);
        assert!(!ready(store.check(&key, &one)).allowed);
        assert!(ready(store.check(&key, &two)).allowed);
    }

    #[test]
    fn refilled_keys_are_evicted_when_idle() {
        let (store, clock) = manual(1000);
        let quota = Quota::per_minute(60).unwrap();
        for n in 0..100 {
            ready(store.check(&ip(n), &quota));
        }
        assert_eq!(store.len(), 100);
        clock.advance(Duration::from_millis(999));
        store.evict_idle();
        assert_eq!(store.len(), 100, "still within their interval");
        clock.advance(Duration::from_millis(1));
        store.evict_idle();
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn idle_keys_are_swept_on_use() {
        let (store, clock) = manual(6400);
        let quota = Quota::per_minute(60).unwrap();
        for n in 0..1000 {
            ready(store.check(&ip(n), &quota));
        }
        clock.advance(DEFAULT_SWEEP_EVERY);
        // Touch every table once.
        for n in 1000..3000 {
            ready(store.check(&ip(n), &quota));
        }
        assert_eq!(store.len(), 2000);
    }

    #[test]
    fn a_flood_of_new_keys_is_bounded_and_cannot_reset_a_throttled_key() {
        let (store, clock) = manual(64 * 16);
        let quota = Quota::per_minute(5).unwrap();
        let victim = RateKey::Text("throttled".into());
        for _ in 0..5 {
            assert!(ready(store.check(&victim, &quota)).allowed);
        }
        assert!(!ready(store.check(&victim, &quota)).allowed);
        let mut refused = 0u32;
        for n in 0..1_000_000u32 {
            if !ready(store.check(&ip(n), &quota)).allowed {
                refused += 1;
            }
            if n % 100_000 == 0 {
                assert!(store.len() <= store.max_keys());
                assert!(!ready(store.check(&victim, &quota)).allowed);
            }
            if n % 1000 == 0 {
                clock.advance(Duration::from_millis(1));
            }
        }
        assert!(store.len() <= store.max_keys());
        assert!(refused > 900_000, "the overflow allowance is shared");
        assert!(!ready(store.check(&victim, &quota)).allowed);
        let bytes = store.heap_bytes();
        println!(
            "{} keys, {} heap bytes, {} bytes per key",
            store.len(),
            bytes,
            bytes / store.len().max(1)
        );
    }

    #[test]
    fn bytes_per_key_at_capacity() {
        let (store, _) = manual(DEFAULT_MAX_KEYS);
        let quota = Quota::per_minute(5).unwrap();
        for n in 0..200_000 {
            ready(store.check(&ip(n), &quota));
        }
        let len = store.len();
        assert!(len <= DEFAULT_MAX_KEYS);
        let per_key = store.heap_bytes() / len;
        println!("MemoryStore: {len} keys, {per_key} bytes per key");
        assert!(per_key <= 64, "{per_key} bytes per key");
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_time_drives_the_default_clock() {
        let store = MemoryStore::with_max_keys(100);
        let quota = Quota::per_window(Duration::from_secs(10), 1).unwrap();
        let key = RateKey::Global;
        assert!(ready(store.check(&key, &quota)).allowed);
        let d = ready(store.check(&key, &quota));
        assert_eq!(d.retry_after, Some(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(ready(store.check(&key, &quota)).allowed);
    }
}
