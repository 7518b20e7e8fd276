//! A [`Store`] shared by several instances through Redis.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use super::fail_mode::FailMode;
use super::memory::MemoryStore;
use super::store::{Allowance, Quota, RateKey, Store};
use crate::error::ConfigError;
use crate::guard::NowOrLater;
use crate::url_text;

/// The GCRA step, run atomically by Redis.
///
/// `KEYS[1]`: the key holding the theoretical arrival time (TAT, in
/// microseconds of the server clock). `ARGV[1]`: the emission interval in
/// microseconds; `ARGV[2]`: the burst. Returns `{allowed, remaining,
/// reset_after_us, retry_after_us}`.
///
/// The clock is the server's `TIME`, so instances whose own clocks disagree
/// still count against one timeline. The key expires once the allowance is
/// full again, so idle keys cost nothing.
const GCRA: &str = r"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local window = interval * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local new_tat = tat + interval
if new_tat - now > window then
  return {0, 0, tat - now, new_tat - now - window}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {1, math.floor((window - (new_tat - now)) / interval), new_tat - now, 0}
";

/// Texts up to this many bytes, of plain characters, go into the key as
/// they are; anything else is hashed.
const MAX_PLAIN_TEXT: usize = 64;

/// Whether a [`RedisStore`] currently decides without Redis.
///
/// Cheap to clone; every clone (and the store) shares one state, so it can
/// be handed to a `/health` endpoint or a metrics gauge.
#[derive(Clone, Debug, Default)]
pub struct RedisHealth(Arc<HealthState>);

#[derive(Debug, Default)]
struct HealthState {
    degraded: AtomicBool,
    failures: AtomicU64,
}

impl RedisHealth {
    /// `true` while Redis is unreachable and decisions follow the
    /// [`FailMode`].
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.0.degraded.load(Ordering::Relaxed)
    }

    /// How many Redis calls have failed or timed out since start.
    #[must_use]
    pub fn failures(&self) -> u64 {
        self.0.failures.load(Ordering::Relaxed)
    }
}

/// Rate-limit state shared by every instance through one Redis server.
///
/// Each decision is one atomic round trip: a GCRA script (sent once, then
/// called by its SHA; reloaded by itself after a `SCRIPT FLUSH` or a server
/// restart) that reads the server's clock, so instances with skewed clocks
/// agree. Keys are `prefix` + `g` (global), `ip:<address>`, or `t:<text>`
/// (`th:<sha-256>` for long or unusual texts), and expire once the allowance
/// is full again.
///
/// When Redis fails or does not answer within the [timeout](Self::timeout),
/// the store decides by its [`FailMode`] and reports itself
/// [degraded](Self::is_degraded): one warning when that starts, one info
/// line when Redis answers again. While degraded it asks Redis again at most
/// once per [`retry_every`](Self::retry_every) and decides locally meanwhile.
///
/// Clones share the connection, the script and the health state.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_warden::rate_limit::{FailMode, RedisStore};
///
/// # fn main() -> Result<(), tower_warden::ConfigError> {
/// let store = RedisStore::new("redis://127.0.0.1:6379/")?
///     .prefix("my-app:rl:")
///     .timeout(Duration::from_millis(50))
///     .fail_mode(FailMode::Closed);
/// let health = store.health(); // for `/health` or a gauge
/// # let _ = health;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    redacted_url: String,
    connection: OnceLock<ConnectionManager>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    retry_every: Duration,
    fail_mode: FailMode,
    fallback: Arc<dyn Store>,
    health: RedisHealth,
    /// The start of the clock `last_try_ms` counts from.
    epoch: Instant,
    /// When Redis was last asked while degraded (ms since `epoch`).
    last_try_ms: AtomicU64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("RedisStore")
            .field("url", &inner.redacted_url)
            .field("prefix", &inner.prefix)
            .field("timeout", &inner.timeout)
            .field("retry_every", &inner.retry_every)
            .field("fail_mode", &inner.fail_mode)
            .field("degraded", &inner.health.is_degraded())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis server at `url`: `redis://[user:password@]host[:port][/db]`,
    /// `redis+unix:///path`, or — with the `redis-tls` feature —
    /// `rediss://…`, TLS verified against the system's root certificates.
    /// Connects lazily, on the first decision, and reconnects by itself.
    ///
    /// # Errors
    ///
    /// When `url` is not a Redis URL this crate can use; the error names
    /// `url` and never repeats the URL (it may hold a password).
    pub fn new(url: &str) -> Result<Self, ConfigError> {
        Ok(Self::from_client(client(url, None)?, url))
    }

    /// A store on the Redis server at a `rediss://` `url` whose certificate
    /// is verified against `ca_pem` (PEM certificates, such as the file
    /// of `MCP_REDIS_CA_FILE`) instead of the system's roots: for a Redis
    /// with a certificate from a private CA.
    ///
    /// # Errors
    ///
    /// When `url` is not a `rediss://` URL, `ca_pem` holds no certificate,
    /// or the `redis-tls` feature is off; the error names `url`
    /// or `ca_pem`.
    pub fn with_root_certificates(url: &str, ca_pem: &[u8]) -> Result<Self, ConfigError> {
        Ok(Self::from_client(client(url, Some(ca_pem))?, url))
    }

    fn from_client(client: redis::Client, url: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                redacted_url: url_text::redact(url),
                connection: OnceLock::new(),
                script: redis::Script::new(GCRA),
                prefix: super::DEFAULT_REDIS_PREFIX.to_owned(),
                timeout: Duration::from_millis(50),
                retry_every: Duration::from_secs(1),
                fail_mode: FailMode::Local,
                fallback: Arc::new(MemoryStore::new()),
                health: RedisHealth::default(),
                epoch: Instant::now(),
                last_try_ms: AtomicU64::new(0),
            }),
        }
    }

    fn with(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        // Builders run before the store is shared; a store already cloned
        // gets its own copy of the settings (and a fresh connection).
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                let old = &self.inner;
                let mut inner = Inner {
                    client: old.client.clone(),
                    redacted_url: old.redacted_url.clone(),
                    connection: OnceLock::new(),
                    script: redis::Script::new(GCRA),
                    prefix: old.prefix.clone(),
                    timeout: old.timeout,
                    retry_every: old.retry_every,
                    fail_mode: old.fail_mode,
                    fallback: Arc::clone(&old.fallback),
                    health: RedisHealth::default(),
                    epoch: Instant::now(),
                    last_try_ms: AtomicU64::new(0),
                };
                f(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// The prefix of every key this store writes (default
    /// `tower-warden:rl:`). Give each application, or each quota that
    /// shares key names, its own.
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.with(|inner| inner.prefix = prefix)
    }

    /// How long one decision may wait for Redis (default 50 ms). Past it,
    /// the [`FailMode`] decides.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.with(|inner| inner.timeout = timeout)
    }

    /// While degraded, how often Redis is asked again (default 1 s).
    /// Requests in between decide by the [`FailMode`] at once.
    pub fn retry_every(self, every: Duration) -> Self {
        self.with(|inner| inner.retry_every = every)
    }

    /// What to do while Redis is unreachable (default [`FailMode::Local`]).
    pub fn fail_mode(self, mode: FailMode) -> Self {
        self.with(|inner| inner.fail_mode = mode)
    }

    /// The local store [`FailMode::Local`] decides with while Redis is
    /// unreachable, asked with the same key and quota (default: a
    /// [`MemoryStore`] of [`DEFAULT_MAX_KEYS`](super::DEFAULT_MAX_KEYS)
    /// keys).
    pub fn fallback(self, store: Arc<dyn Store>) -> Self {
        self.with(|inner| inner.fallback = store)
    }

    /// `true` while Redis is unreachable.
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.inner.health.is_degraded()
    }

    /// A handle on the health state, shared with this store.
    #[must_use]
    pub fn health(&self) -> RedisHealth {
        self.inner.health.clone()
    }

    /// The Redis key a rate key is counted under.
    #[must_use]
    pub fn key_for(&self, key: &RateKey) -> String {
        encode_key(&self.inner.prefix, key)
    }
}

impl Store for RedisStore {
    fn check(&self, key: &RateKey, quota: &Quota) -> NowOrLater<Allowance> {
        let inner = Arc::clone(&self.inner);
        let key = key.clone();
        let quota = *quota;
        NowOrLater::Later(Box::pin(async move { inner.decide(key, quota).await }))
    }
}

impl Inner {
    async fn decide(&self, key: RateKey, quota: Quota) -> Allowance {
        if self.health.is_degraded() && !self.claim_retry() {
            return self.failed(&key, &quota).await;
        }
        let redis_key = encode_key(&self.prefix, &key);
        let result = tokio::time::timeout(self.timeout, self.ask(&redis_key, &quota)).await;
        match result {
            Ok(Ok(decision)) => {
                if self.health.0.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        prefix = %self.prefix,
                        "rate limit: Redis answers again; shared quotas restored"
                    );
                    crate::telemetry::rate_limit_degraded(false);
                }
                decision
            }
            Ok(Err(error)) => {
                self.mark_failed(&error.to_string());
                self.failed(&key, &quota).await
            }
            Err(_elapsed) => {
                self.mark_failed("no answer within the timeout");
                self.failed(&key, &quota).await
            }
        }
    }

    /// While degraded: whether this call is the one that asks Redis again.
    fn claim_retry(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let every = u64::try_from(self.retry_every.as_millis()).unwrap_or(u64::MAX);
        let last = self.last_try_ms.load(Ordering::Relaxed);
        now.saturating_sub(last) >= every
            && self
                .last_try_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn mark_failed(&self, why: &str) {
        self.health.0.failures.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_try_ms.store(now, Ordering::Relaxed);
        if !self.health.0.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                prefix = %self.prefix,
                fail_mode = ?self.fail_mode,
                error = why,
                "rate limit: Redis unreachable; deciding by the fail mode until it answers"
            );
            crate::telemetry::rate_limit_degraded(true);
        }
    }

    async fn ask(&self, redis_key: &str, quota: &Quota) -> redis::RedisResult<Allowance> {
        let mut connection = match self.connection.get() {
            Some(connection) => connection.clone(),
            None => {
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(10))
                    .set_max_delay(Duration::from_millis(200))
                    .set_connection_timeout(Some(Duration::from_secs(2)));
                let manager = ConnectionManager::new_lazy_with_config(self.client.clone(), config)?;
                self.connection.get_or_init(|| manager).clone()
            }
        };
        let interval_us = u64::try_from(quota.interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let (allowed, remaining, reset_us, retry_us): (i64, i64, i64, i64) = self
            .script
            .key(redis_key)
            .arg(interval_us)
            .arg(quota.burst())
            .invoke_async(&mut connection)
            .await?;
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Allowance {
            allowed: allowed == 1,
            limit: quota.burst(),
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            reset_after: micros(reset_us),
            retry_after: (allowed != 1).then(|| micros(retry_us)),
        })
    }

    /// The decision without Redis.
    async fn failed(&self, key: &RateKey, quota: &Quota) -> Allowance {
        match self.fail_mode {
            FailMode::Local => self.fallback.check(key, quota).resolve().await,
            FailMode::Open => Allowance {
                allowed: true,
                limit: quota.burst(),
                remaining: quota.burst().saturating_sub(1),
                reset_after: Duration::ZERO,
                retry_after: None,
            },
            FailMode::Closed => Allowance {
                allowed: false,
                limit: quota.burst(),
                remaining: 0,
                reset_after: Duration::from_secs(1),
                retry_after: Some(Duration::from_secs(1)),
            },
        }
    }
}

/// `prefix` + a stable, bounded encoding of `key`.
fn encode_key(prefix: &str, key: &RateKey) -> String {
    let mut out = String::with_capacity(prefix.len() + 3 + MAX_PLAIN_TEXT);
    out.push_str(prefix);
    match key {
        RateKey::Global => out.push('g'),
        RateKey::Ip(IpAddr::V4(ip)) => {
            out.push_str("ip:");
            out.push_str(&ip.to_string());
        }
        RateKey::Ip(IpAddr::V6(ip)) => {
            out.push_str("ip:");
            out.push_str(&ip.to_string());
        }
        RateKey::Text(text) if is_plain(text) => {
            out.push_str("t:");
            out.push_str(text);
        }
        RateKey::Text(text) => {
            out.push_str("th:");
            let digest = Sha256::digest(text.as_bytes());
            for byte in &digest[..16] {
                out.push_str(&format!("{byte:02x}"));
            }
        }
    }
    out
}

fn is_plain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_PLAIN_TEXT
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'/'))
}

/// The setting an error about the Redis URL names (the `url` of
/// [`client`], [`RedisStore::new`] and
/// [`RedisStore::with_root_certificates`]); settings loaders relabel it
/// with their own name (`MCP_REDIS_URL`).
pub(crate) const URL_SETTING: &str = "url";

/// The setting an error about the CA certificates names (the `ca_pem` of
/// [`client`] and [`RedisStore::with_root_certificates`]); settings
/// loaders relabel it with their own name (`MCP_REDIS_CA_FILE`).
pub(crate) const CA_SETTING: &str = "ca_pem";

/// The Redis client of `url` as [`RedisStore`] makes it, for an
/// application's own use of the same Redis (the reference server keeps its
/// MCP sessions there): `redis://`, `redis+unix://`, or `rediss://`
/// (feature `redis-tls`) verified against `ca_pem` when given, else the
/// system's roots. It does not connect.
///
/// # Errors
///
/// As [`RedisStore::new`] and [`RedisStore::with_root_certificates`]
/// (named `url` or `ca_pem`); errors never repeat the URL
/// (it may hold a password).
pub fn client(url: &str, ca_pem: Option<&[u8]>) -> Result<redis::Client, ConfigError> {
    let tls = url_text::is_redis_tls(url);
    if !tls && ca_pem.is_some() {
        return Err(ConfigError::new(
            CA_SETTING,
            "is for TLS: the URL must be a rediss:// URL",
        ));
    }
    if tls && !cfg!(feature = "redis-tls") {
        return Err(ConfigError::new(
            URL_SETTING,
            "rediss:// needs the `redis-tls` feature of tower-warden",
        ));
    }
    #[cfg(feature = "redis-tls")]
    if tls {
        // A connection's TLS setup needs a default provider; install one
        // when the application has not.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    let opened = match ca_pem {
        #[cfg(feature = "redis-tls")]
        Some(pem) => {
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(ConfigError::new(
                    CA_SETTING,
                    "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                ));
            }
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            )
        }
        _ => redis::Client::open(url),
    };
    // The redis error is not repeated: the URL may hold a password.
    opened.map_err(|_| {
        ConfigError::new(
            URL_SETTING,
            "not a usable Redis URL: expected redis://[user:password@]host[:port][/db], \
             rediss://… or redis+unix:///path",
        )
    })
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

    use super::*;

    /// A URL on which nothing listens: connections are refused at once.
    fn refused_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        format!("redis://127.0.0.1:{port}/")
    }

    async fn decide(store: &RedisStore, key: &RateKey, quota: &Quota) -> Allowance {
        store.check(key, quota).resolve().await
    }

    fn quota(burst: u32) -> Quota {
        Quota::per_window(Duration::from_secs(60), burst).unwrap()
    }

    #[test]
    fn keys_are_stable_and_bounded() {
        let p = "x:";
        assert_eq!(encode_key(p, &RateKey::Global), "x:g");
        assert_eq!(
            encode_key(p, &RateKey::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)))),
            "x:ip:192.0.2.7"
        );
        assert_eq!(
            encode_key(p, &RateKey::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))),
            "x:ip:::1"
        );
        assert_eq!(
            encode_key(p, &RateKey::Text("alice@example.com".into())),
            "x:t:alice@example.com"
        );
        // Spaces, colons, newlines and long texts are hashed: bounded, and
        // the same in every process (SHA-256, not a per-process hasher).
        let odd = encode_key(p, &RateKey::Text("a b\nc:d".into()));
        assert_eq!(odd, "x:th:7ab5db3b5b5ffc28c199ecf4b5b0c015");
        let long = encode_key(p, &RateKey::Text("y".repeat(10_000).into()));
        assert_eq!(long.len(), "x:th:".len() + 32);
        assert_ne!(
            encode_key(p, &RateKey::Text("y".repeat(64).into())),
            encode_key(p, &RateKey::Text("y".repeat(65).into()))
        );
    }

    #[test]
    fn a_bad_url_names_the_variable_and_hides_the_url() {
        let err = RedisStore::new("http://user:hunter2@example.com/").unwrap_err();
        assert_eq!(err.setting(), URL_SETTING);
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(RedisStore::new("not a url").is_err());
        assert!(RedisStore::new("").is_err());
    }

    #[test]
    fn debug_never_prints_the_password() {
        let store = RedisStore::new("redis://user:hunter2@127.0.0.1:6379/0").unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("redis://user:<redacted>@127.0.0.1:6379/0"),
            "{shown}"
        );
        let query = RedisStore::new("redis://127.0.0.1:6379/0?password=hunter2").unwrap();
        let shown = format!("{query:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn unreachable_closed_refuses_and_open_admits() {
        let q = quota(5);
        let closed = RedisStore::new(&refused_url())
            .unwrap()
            .fail_mode(FailMode::Closed);
        let d = decide(&closed, &RateKey::Global, &q).await;
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_secs(1)));
        assert!(closed.is_degraded());

        let open = RedisStore::new(&refused_url())
            .unwrap()
            .fail_mode(FailMode::Open);
        for _ in 0..10 {
            assert!(decide(&open, &RateKey::Global, &q).await.allowed);
        }
        assert!(open.health().is_degraded());
    }

    #[tokio::test]
    async fn unreachable_local_limits_with_the_fallback_and_logs_once() {
        crate::testing::start();
        let prefix = "unit-local-fallback:";
        let store = RedisStore::new(&refused_url())
            .unwrap()
            .prefix(prefix)
            .retry_every(Duration::from_secs(3600))
            .fallback(Arc::new(MemoryStore::new()));
        let key = RateKey::Text("bob".into());
        let q = quota(3);
        let decisions: Vec<bool> = {
            let mut v = Vec::new();
            for _ in 0..5 {
                v.push(decide(&store, &key, &q).await.allowed);
            }
            v
        };
        assert_eq!(decisions, [true, true, true, false, false]);
        assert!(store.is_degraded());
        // Only the first call asked Redis; the others waited for the retry
        // interval.
        assert_eq!(store.health().failures(), 1);
        let lines = crate::testing::lines_with(prefix);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("WARN"), "{lines:?}");
    }

    #[tokio::test]
    async fn local_by_default_limits_in_memory_with_the_same_quota() {
        let store = RedisStore::new(&refused_url()).unwrap();
        let key = RateKey::Text("t:default-fallback".into());
        for expected in [true, true, false] {
            assert_eq!(decide(&store, &key, &quota(2)).await.allowed, expected);
        }
        assert!(store.is_degraded());
    }

    /// Nothing listens, then a `redis-server` starts on that port: one
    /// warning when the store degrades, one info line when it recovers, no
    /// line for the failures in between.
    #[tokio::test]
    async fn one_log_line_per_transition() {
        crate::testing::start();
        let have_server = std::process::Command::new("redis-server")
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !have_server {
            assert!(
                std::env::var("TOWER_WARDEN_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "redis-server is not installed but TOWER_WARDEN_REQUIRE_SERVICES=1"
            );
            eprintln!("one_log_line_per_transition: skipped: no redis-server on PATH");
            return;
        }
        let url = refused_url();
        let port = url
            .trim_start_matches("redis://127.0.0.1:")
            .trim_end_matches('/');
        let prefix = "unit-transitions:";
        let store = RedisStore::new(&url)
            .unwrap()
            .prefix(prefix)
            .timeout(Duration::from_millis(500))
            .retry_every(Duration::ZERO)
            .fallback(Arc::new(MemoryStore::new()));
        let q = quota(1000);
        for _ in 0..3 {
            decide(&store, &RateKey::Global, &q).await;
        }
        assert!(store.is_degraded());
        assert_eq!(store.health().failures(), 3);

        let mut child = std::process::Command::new("redis-server")
            .args(["--port", port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.is_degraded() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            decide(&store, &RateKey::Global, &q).await;
        }
        let recovered = !store.is_degraded();
        let _ = child.kill();
        let _ = child.wait();
        assert!(recovered, "no recovery within 10 s");

        let lines = crate::testing::lines_with(prefix);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("WARN") && lines[0].contains("unreachable"));
        assert!(lines[1].contains("INFO") && lines[1].contains("answers again"));
    }
}
