//! Circuit breaking: stop calling a service that keeps failing, and let a
//! few probes find out when it is back.
//!
//! A [`CircuitBreaker`] is **closed** while calls succeed. After
//! [`failure_threshold`](CircuitBreakerBuilder::failure_threshold)
//! consecutive failures — or, when set, a
//! [failure rate](CircuitBreakerBuilder::failure_rate) over a rolling window
//! with a minimum number of calls — it **opens**: calls are refused at once,
//! without reaching the service. After the
//! [reset timeout](CircuitBreakerBuilder::reset_timeout) it is **half-open**:
//! up to [`half_open_probes`](CircuitBreakerBuilder::half_open_probes) calls
//! go through; a success closes it, a failure opens it again for another
//! timeout. Each transition is logged once (a warning when it opens).
//!
//! Use the breaker directly around any call ([`CircuitBreaker::try_acquire`]
//! and a [`Permit`]), or as a layer: [`CircuitBreakerLayer`] answers an open
//! breaker with 503 `circuit_open` and `Retry-After` (gRPC `UNAVAILABLE`),
//! and counts inner errors, 5xx and 408 answers as failures unless you
//! [classify](CircuitBreakerLayer::classify) them yourself.
//! [`CircuitBreakers`] keeps one breaker per key (one per upstream) with
//! the same settings, and lists their states for `/health`.
//!
//! The closed path takes no lock: a state word and counters are atomics.
//! Time is `tokio::time::Instant`, so paused tokio time drives it in tests.
//!
//! ```
//! use std::time::Duration;
//! use tower_warden::circuit_breaker::{BreakerState, CircuitBreaker};
//!
//! # fn main() -> Result<(), tower_warden::ConfigError> {
//! let breaker = CircuitBreaker::builder("search")
//!     .failure_threshold(2)
//!     .reset_timeout(Duration::from_secs(30))
//!     .build()?;
//! for _ in 0..2 {
//!     breaker.try_acquire().expect("closed").failure();
//! }
//! assert!(matches!(breaker.state(), BreakerState::Open { .. }));
//! assert!(breaker.try_acquire().is_err());
//! # Ok(())
//! # }
//! ```

mod layer;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

pub use layer::{BreakCircuit, CircuitBreakerLayer, Outcome, ResponseFuture};

use crate::error::ConfigError;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// How many buckets the failure-rate window is kept in.
const BUCKETS: usize = 10;

/// A breaker's state, as [`CircuitBreaker::state`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused; a probe is let through after `retry_after`.
    Open {
        /// Time left before the breaker turns half-open.
        retry_after: Duration,
    },
    /// A limited number of probe calls go through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    #[must_use]
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// A refusal: the breaker is open (or half-open with every probe slot
/// taken).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Open {
    retry_after: Duration,
}

impl Open {
    /// How long until a call may be tried again (at least a millisecond).
    #[must_use]
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for Open {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit open; retry after {:?}", self.retry_after)
    }
}

impl std::error::Error for Open {}

#[derive(Clone, Copy, Debug)]
struct Rate {
    rate: f64,
    window: Duration,
    min_calls: u32,
}

#[derive(Clone, Debug)]
struct Settings {
    failure_threshold: u32,
    rate: Option<Rate>,
    reset_timeout: Duration,
    half_open_probes: u32,
}

/// Builds a [`CircuitBreaker`]; see the [module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct CircuitBreakerBuilder {
    name: String,
    settings: Settings,
}

impl CircuitBreakerBuilder {
    /// Consecutive failures that open the breaker (default 5; at least 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.settings.failure_threshold = failures;
        self
    }

    /// Also open when more than `rate` (0 < rate ≤ 1) of the calls in the
    /// last `window` failed, once at least `min_calls` were made in it.
    pub fn failure_rate(mut self, rate: f64, window: Duration, min_calls: u32) -> Self {
        self.settings.rate = Some(Rate {
            rate,
            window,
            min_calls,
        });
        self
    }

    /// How long the breaker stays open before a probe (default 60 s).
    pub fn reset_timeout(mut self, timeout: Duration) -> Self {
        self.settings.reset_timeout = timeout;
        self
    }

    /// How many probe calls half-open lets through at once (default 1).
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.settings.half_open_probes = probes;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        if s.failure_threshold == 0 {
            return Err(ConfigError::new("failure_threshold", "must be at least 1"));
        }
        if s.reset_timeout.is_zero() {
            return Err(ConfigError::new(
                "reset_timeout",
                "must be longer than zero",
            ));
        }
        if s.half_open_probes == 0 {
            return Err(ConfigError::new("half_open_probes", "must be at least 1"));
        }
        if let Some(rate) = s.rate {
            if !(rate.rate > 0.0 && rate.rate <= 1.0) {
                return Err(ConfigError::new(
                    "failure_rate",
                    "the rate must be above 0 and at most 1",
                ));
            }
            if rate.window < Duration::from_millis(BUCKETS as u64) {
                return Err(ConfigError::new(
                    "failure_rate",
                    "the window must be at least 10 ms",
                ));
            }
            if rate.min_calls == 0 {
                return Err(ConfigError::new(
                    "failure_rate",
                    "min_calls must be at least 1",
                ));
            }
        }
        Ok(())
    }

    /// The breaker.
    ///
    /// # Errors
    ///
    /// A setting out of range, by builder method name.
    pub fn build(self) -> Result<CircuitBreaker, ConfigError> {
        self.validate()?;
        Ok(CircuitBreaker::from_settings(&self.name, self.settings))
    }
}

/// One rolling-window bucket: which slice of time it counts, and its calls.
#[derive(Default)]
struct Bucket {
    slice: AtomicU64,
    calls: AtomicU32,
    failures: AtomicU32,
}

struct Shared {
    name: Box<str>,
    settings: Settings,
    state: AtomicU8,
    consecutive: AtomicU32,
    /// When the breaker last opened (ns since `epoch`).
    opened_at: AtomicU64,
    /// Probes in flight while half-open.
    probes: AtomicU32,
    buckets: Box<[Bucket]>,
    rejected: AtomicU64,
    epoch: Instant,
}

/// A circuit breaker; cheap to clone (clones share the state). See the
/// [module docs](self).
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Arc<Shared>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A builder with the defaults: 5 consecutive failures, 60 s reset
    /// timeout, one probe, no failure-rate rule.
    pub fn builder(name: impl Into<String>) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            name: name.into(),
            settings: Settings {
                failure_threshold: 5,
                rate: None,
                reset_timeout: Duration::from_secs(60),
                half_open_probes: 1,
            },
        }
    }

    fn from_settings(name: &str, settings: Settings) -> Self {
        let buckets = if settings.rate.is_some() { BUCKETS } else { 0 };
        Self {
            shared: Arc::new(Shared {
                name: name.into(),
                settings,
                state: AtomicU8::new(CLOSED),
                consecutive: AtomicU32::new(0),
                opened_at: AtomicU64::new(0),
                probes: AtomicU32::new(0),
                buckets: (0..buckets).map(|_| Bucket::default()).collect(),
                rejected: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
        }
    }

    /// The name it logs under.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The state now.
    #[must_use]
    pub fn state(&self) -> BreakerState {
        let s = &self.shared;
        match s.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => match s.open_remaining() {
                Some(retry_after) => BreakerState::Open { retry_after },
                None => BreakerState::HalfOpen,
            },
        }
    }

    /// How many calls were refused since the breaker was built.
    #[must_use]
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Asks to make one call: a [`Permit`] to report its outcome with, or
    /// [`Open`] when the call must not be made.
    ///
    /// # Errors
    ///
    /// The breaker is open, or half-open with every probe slot taken.
    pub fn try_acquire(&self) -> Result<Permit, Open> {
        let s = &self.shared;
        let state = s.state.load(Ordering::Acquire);
        if state == CLOSED {
            return Ok(Permit::new(self, false));
        }
        if state == OPEN {
            if let Some(retry_after) = s.open_remaining() {
                return Err(s.refuse(retry_after));
            }
            if s.state
                .compare_exchange(OPEN, HALF_OPEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                tracing::info!(breaker = %s.name, "circuit breaker half-open: probing");
                crate::telemetry::breaker_state(&s.name, "half_open", 1.0);
            }
        }
        // Half-open: a limited number of probes.
        let taken = s.probes.fetch_add(1, Ordering::AcqRel);
        if taken < s.settings.half_open_probes && s.state.load(Ordering::Acquire) == HALF_OPEN {
            return Ok(Permit::new(self, true));
        }
        s.probes.fetch_sub(1, Ordering::AcqRel);
        if s.state.load(Ordering::Acquire) == CLOSED {
            return Ok(Permit::new(self, false));
        }
        let retry_after = s.open_remaining().unwrap_or(Duration::from_secs(1));
        Err(s.refuse(retry_after))
    }
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// While open: the time left before a probe.
    fn open_remaining(&self) -> Option<Duration> {
        let opened = self.opened_at.load(Ordering::Acquire);
        let elapsed = Duration::from_nanos(self.now_ns().saturating_sub(opened));
        self.settings
            .reset_timeout
            .checked_sub(elapsed)
            .filter(|d| !d.is_zero())
    }

    fn refuse(&self, retry_after: Duration) -> Open {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Open {
            retry_after: retry_after.max(Duration::from_millis(1)),
        }
    }

    fn open(&self, from: u8, why: &str) {
        self.opened_at.store(self.now_ns(), Ordering::Release);
        if self
            .state
            .compare_exchange(from, OPEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.consecutive.store(0, Ordering::Relaxed);
            tracing::warn!(
                breaker = %self.name,
                reason = why,
                reset_timeout_ms = u64::try_from(self.settings.reset_timeout.as_millis()).unwrap_or(u64::MAX),
                "circuit breaker open: calls are refused until a probe succeeds"
            );
            crate::telemetry::breaker_state(&self.name, "open", 2.0);
        }
    }

    fn close(&self) {
        if self
            .state
            .compare_exchange(HALF_OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.consecutive.store(0, Ordering::Relaxed);
            for bucket in &*self.buckets {
                bucket.calls.store(0, Ordering::Relaxed);
                bucket.failures.store(0, Ordering::Relaxed);
            }
            tracing::info!(breaker = %self.name, "circuit breaker closed: the service answers again");
            crate::telemetry::breaker_state(&self.name, "closed", 0.0);
        }
    }

    /// Counts one call in the rolling window; `true` when the failure rate
    /// is now over the limit.
    fn record(&self, failed: bool) -> bool {
        let Some(rate) = self.settings.rate else {
            return false;
        };
        let slice_ns = u64::try_from(rate.window.as_nanos() / BUCKETS as u128)
            .unwrap_or(u64::MAX)
            .max(1);
        let slice = self.now_ns() / slice_ns;
        let bucket = &self.buckets[(slice % BUCKETS as u64) as usize];
        let seen = bucket.slice.load(Ordering::Acquire);
        if seen != slice
            && bucket
                .slice
                .compare_exchange(seen, slice, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.calls.store(0, Ordering::Relaxed);
            bucket.failures.store(0, Ordering::Relaxed);
        }
        bucket.calls.fetch_add(1, Ordering::Relaxed);
        if !failed {
            return false;
        }
        bucket.failures.fetch_add(1, Ordering::Relaxed);
        let (mut calls, mut failures) = (0u64, 0u64);
        for b in &*self.buckets {
            let s = b.slice.load(Ordering::Acquire);
            if s + (BUCKETS as u64) > slice && s <= slice {
                calls += u64::from(b.calls.load(Ordering::Relaxed));
                failures += u64::from(b.failures.load(Ordering::Relaxed));
            }
        }
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let share = failures as f64 / calls.max(1) as f64;
        calls >= u64::from(rate.min_calls) && share >= rate.rate
    }
}

/// Leave to make one call; report how it went with [`success`](Self::success)
/// or [`failure`](Self::failure). Dropped without a verdict (the call was
/// cancelled), it counts as neither, and frees its probe slot.
#[must_use = "report the call's outcome, or it counts as neither"]
pub struct Permit {
    breaker: CircuitBreaker,
    probe: bool,
    done: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.shared.name)
            .field("probe", &self.probe)
            .finish()
    }
}

impl Permit {
    fn new(breaker: &CircuitBreaker, probe: bool) -> Self {
        Self {
            breaker: breaker.clone(),
            probe,
            done: false,
        }
    }

    /// The call succeeded.
    pub fn success(mut self) {
        self.done = true;
        let s = &self.breaker.shared;
        if self.probe {
            s.probes.fetch_sub(1, Ordering::AcqRel);
            s.close();
            return;
        }
        if s.consecutive.load(Ordering::Relaxed) != 0 {
            s.consecutive.store(0, Ordering::Relaxed);
        }
        s.record(false);
    }

    /// The call failed.
    pub fn failure(mut self) {
        self.done = true;
        let s = &self.breaker.shared;
        if self.probe {
            s.probes.fetch_sub(1, Ordering::AcqRel);
            s.open(HALF_OPEN, "a probe failed");
            return;
        }
        let consecutive = s.consecutive.fetch_add(1, Ordering::AcqRel) + 1;
        let over_rate = s.record(true);
        if consecutive >= s.settings.failure_threshold {
            s.open(CLOSED, "consecutive failures");
        } else if over_rate {
            s.open(CLOSED, "failure rate over the limit");
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.shared.probes.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One breaker per key (for example one per upstream), all with the same
/// settings. Breakers live until [`remove`](Self::remove)d.
#[derive(Clone)]
pub struct CircuitBreakers {
    template: CircuitBreakerBuilder,
    map: Arc<Mutex<HashMap<String, CircuitBreaker>>>,
}

impl fmt::Debug for CircuitBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakers")
            .field("settings", &self.template.settings)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakers {
    /// Breakers built like `template` (its name prefixes each key's).
    ///
    /// # Errors
    ///
    /// A setting of `template` out of range.
    pub fn new(template: CircuitBreakerBuilder) -> Result<Self, ConfigError> {
        template.validate()?;
        Ok(Self {
            template,
            map: Arc::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CircuitBreaker>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The breaker of `key`, made on first use.
    #[must_use]
    pub fn get_or_insert(&self, key: &str) -> CircuitBreaker {
        let mut map = self.lock();
        if let Some(breaker) = map.get(key) {
            return breaker.clone();
        }
        let name = if self.template.name.is_empty() {
            key.to_owned()
        } else {
            format!("{}:{key}", self.template.name)
        };
        let breaker = CircuitBreaker::from_settings(&name, self.template.settings.clone());
        map.insert(key.to_owned(), breaker.clone());
        breaker
    }

    /// Forgets `key`'s breaker.
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Every key and its breaker's state, sorted by key.
    #[must_use]
    pub fn states(&self) -> Vec<(String, BreakerState)> {
        let mut states: Vec<_> = self
            .lock()
            .iter()
            .map(|(key, breaker)| (key.clone(), breaker.state()))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    }
}
