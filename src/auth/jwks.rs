//! Signing keys fetched from a JWKS URL (feature `jwks-url`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::cache::TokenCache;
use super::keys::KeySet;
use crate::ConfigError;

/// Largest JWKS document accepted (1 MiB).
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where and how often to fetch signing keys.
///
/// * The keys are fetched on first use (or at start-up through
///   [`JwtAuth::prefetch`](super::JwtAuth::prefetch)), then again in the
///   background once they are older than the refresh interval (5 min).
/// * A token that names an unknown `kid` triggers an immediate refetch, so a
///   new signing key is accepted without a restart; refetches are at least
///   the minimum interval apart (10 s), so a flood of made-up `kid`s cannot
///   hammer the identity provider.
/// * The document must hold public keys only: one with a shared secret
///   (`oct`) is refused, and HS* tokens are never checked against fetched
///   keys. A redirect answer is a failed fetch (redirects are not followed).
/// * While the endpoint is down the last good keys stay in use, for at most
///   the maximum staleness (24 h); after that every token is refused with
///   503 `auth_unavailable` until a fetch succeeds (fail closed).
#[derive(Clone, Debug)]
#[must_use]
pub struct JwksUrl {
    url: String,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    max_staleness: Duration,
    timeout: Duration,
    client: Option<reqwest::Client>,
}

impl JwksUrl {
    /// Keys from `url` (`https://`, or `http://` for a local identity
    /// provider).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            refresh_interval: Duration::from_secs(300),
            min_refetch_interval: Duration::from_secs(10),
            max_staleness: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(5),
            client: None,
        }
    }

    /// How old the keys may get before a background refresh (5 min).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The least time between two fetches caused by unknown `kid`s (10 s).
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How long the last good keys are trusted while fetches fail (24 h).
    pub fn max_staleness(mut self, staleness: Duration) -> Self {
        self.max_staleness = staleness;
        self
    }

    /// The time limit of one fetch (5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The HTTP client to fetch with (proxies, extra root certificates).
    /// Build it with `redirect(reqwest::redirect::Policy::none())`: the
    /// default client follows no redirect, and a redirect answer is a
    /// failed fetch.
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }
}

struct Fetched {
    keys: Arc<KeySet>,
    at: Instant,
}

pub(crate) struct RemoteJwks {
    config: JwksUrl,
    client: reqwest::Client,
    state: RwLock<Option<Fetched>>,
    last_attempt: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
    refreshing: AtomicBool,
}

impl RemoteJwks {
    pub(crate) fn new(config: JwksUrl) -> Result<Self, ConfigError> {
        let url = config.url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::new(
                "jwks url",
                format!("{url:?} is not an http(s) URL"),
            ));
        }
        let client = match &config.client {
            Some(client) => client.clone(),
            // A redirect is a failed fetch: the keys come from the URL
            // configured, not from wherever its server points.
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(config.timeout)
                .build()
                .map_err(|e| {
                    ConfigError::new("jwks url", format!("cannot build an HTTP client: {e}"))
                })?,
        };
        Ok(Self {
            config,
            client,
            state: RwLock::new(None),
            last_attempt: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
        })
    }

    /// The keys, unless they were never fetched or are too stale to trust,
    /// and whether they are due for a background refresh.
    pub(crate) fn current(&self) -> Option<(Arc<KeySet>, bool)> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let fetched = state.as_ref()?;
        let age = fetched.at.elapsed();
        if age >= self.config.max_staleness {
            return None;
        }
        let due = age >= self.config.refresh_interval
            && !self.refreshing.load(Ordering::Relaxed)
            && self.last_attempt_older_than(self.config.min_refetch_interval);
        Some((fetched.keys.clone(), due))
    }

    /// Claims the right to run the one background refresh; `false` when
    /// another is under way.
    pub(crate) fn begin_refresh(&self) -> bool {
        !self.refreshing.swap(true, Ordering::AcqRel)
    }

    /// The background refresh claimed by [`begin_refresh`](Self::begin_refresh).
    pub(crate) async fn refresh(&self, cache: &TokenCache) {
        let _ = self.fetch_now(cache).await;
        self.refreshing.store(false, Ordering::Release);
    }

    fn last_attempt_older_than(&self, interval: Duration) -> bool {
        self.last_attempt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|at| at.elapsed() >= interval)
    }

    /// A fetch on behalf of a token whose key is unknown: waits for a fetch
    /// already under way, fetches unless the last attempt was less than the
    /// minimum interval ago, and returns whatever keys are then trusted.
    pub(crate) async fn refetch(&self, cache: &TokenCache) -> Option<Arc<KeySet>> {
        let _guard = self.fetching.lock().await;
        if self.last_attempt_older_than(self.config.min_refetch_interval) {
            let _ = self.fetch_locked(cache).await;
        }
        self.trusted()
    }

    /// When the keys in use were fetched.
    pub(crate) fn fetched_at(&self) -> Option<Instant> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.as_ref().map(|f| f.at)
    }

    fn trusted(&self) -> Option<Arc<KeySet>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .as_ref()
            .filter(|f| f.at.elapsed() < self.config.max_staleness)
            .map(|f| f.keys.clone())
    }

    pub(crate) async fn fetch_now(&self, cache: &TokenCache) -> Result<Arc<KeySet>, ConfigError> {
        let _guard = self.fetching.lock().await;
        self.fetch_locked(cache).await
    }

    async fn fetch_locked(&self, cache: &TokenCache) -> Result<Arc<KeySet>, ConfigError> {
        *self.last_attempt.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let result = self.download().await.and_then(|body| {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            let previous = state.as_ref().map(|f| &*f.keys);
            KeySet::from_remote_jwks_json(&body, previous).map(|(set, _)| set)
        });
        match result {
            Ok(set) => {
                let kept: Vec<u64> = set.ids().collect();
                let keys = Arc::new(set);
                *self.state.write().unwrap_or_else(|e| e.into_inner()) = Some(Fetched {
                    keys: keys.clone(),
                    at: Instant::now(),
                });
                cache.retain_keys(&kept);
                tracing::debug!(target: "tower_warden", keys = kept.len(), "JWKS fetched");
                crate::telemetry::jwks_refresh(true);
                Ok(keys)
            }
            Err(e) => {
                tracing::warn!(target: "tower_warden", error = %e, "JWKS fetch failed; keeping the last good keys");
                crate::telemetry::jwks_refresh(false);
                Err(e)
            }
        }
    }

    async fn download(&self) -> Result<Vec<u8>, ConfigError> {
        let fail = |m: String| ConfigError::new("jwks url", m);
        let fetch = async {
            let mut response = self
                .client
                .get(&self.config.url)
                .header(
                    http::header::ACCEPT,
                    "application/json, application/jwk-set+json",
                )
                .send()
                .await
                .map_err(|e| fail(format!("fetch failed: {e}")))?;
            if !response.status().is_success() {
                return Err(fail(format!("the server answered {}", response.status())));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| fail(format!("fetch failed: {e}")))?
            {
                if body.len() + chunk.len() > MAX_JWKS_BYTES {
                    return Err(fail("the JWKS document is larger than 1 MiB".into()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        tokio::time::timeout(self.config.timeout, fetch)
            .await
            .map_err(|_| fail("fetch timed out".into()))?
    }
}
