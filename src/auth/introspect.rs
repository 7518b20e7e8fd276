//! Opaque access tokens, checked by asking the authorization server (RFC
//! 7662 token introspection; feature `introspection`).
//!
//! * The endpoint is asked with the resource server's own client
//!   credentials: `client_secret_basic`, `client_secret_post` or
//!   `private_key_jwt` (RFC 7523; a fresh assertion per request).
//! * An active answer becomes a [`Principal`] as a JWT's claims do (`sub`,
//!   or the answer's `client_id` when it has none; `scope`, `roles`, the
//!   namespace claim, `cnf`), after its `iss` and `aud` are checked like a
//!   JWT's.
//! * Answers are cached in a bounded cache keyed by a keyed hash of the
//!   token, never past the token's `exp` and never longer than the cache
//!   TTL (60 s by default); an inactive answer is remembered for 10 s, so a
//!   flood of one bad token asks the endpoint once.
//! * The endpoint down, slow (5 s) or answering nonsense is 503
//!   `auth_unavailable` by default ([`IntrospectionFailMode::Closed`]);
//!   [`IntrospectionFailMode::Cached`] keeps admitting tokens the endpoint
//!   last called active, until their own `exp`, while it cannot answer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::cache::TokenCache;
use super::jwt::{Claims, Failure, verified_from_claims};
use super::oauth::{ClientAuth, Endpoint, Names};
use super::verified::Verified;
use crate::ConfigError;
use crate::guard::NowOrLater;
use crate::principal::AuthMethod;
use crate::reject::Reason;
use crate::replay::ReplayCache;

/// Default [`IntrospectionBuilder::cache_ttl`].
pub const DEFAULT_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(60);
/// How long an inactive answer is remembered.
const INACTIVE_TTL: u64 = 10;

/// What the crate does while the introspection endpoint cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IntrospectionFailMode {
    /// Refuse with 503 `auth_unavailable` (the default).
    #[default]
    Closed,
    /// Admit a token the endpoint last called active, until its own `exp`
    /// (past the cache TTL); refuse others with 503.
    Cached,
}

impl IntrospectionFailMode {
    /// The setting value: `closed` or `cached`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Cached => "cached",
        }
    }
}

/// An introspection endpoint and how to use it: the resource server's
/// client credentials, the checks on each answer, the cache of answers and
/// what happens while the endpoint cannot answer. Built by
/// [`Introspection::builder`]; used by
/// [`AuthLayer::introspection`](super::AuthLayer::introspection).
#[derive(Clone)]
#[must_use]
pub struct Introspection {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    timeout: Duration,
    cache_ttl: Duration,
    fail_mode: IntrospectionFailMode,
    issuers: Vec<String>,
    audiences: Vec<String>,
    namespace_claim: String,
    leeway: u64,
    /// Active answers, until `min(exp, now + cache_ttl)`.
    fresh: TokenCache,
    /// Active answers until `exp`, for [`IntrospectionFailMode::Cached`].
    last_known: TokenCache,
    /// Tokens the endpoint called inactive, for a few seconds.
    inactive: ReplayCache,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for Introspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("Introspection")
            .field("url", &crate::url_text::redact(&inner.endpoint.url))
            .field("client_id", &inner.endpoint.client_id)
            .field("auth", inner.endpoint.auth())
            .field("cache_ttl", &inner.cache_ttl)
            .field("fail_mode", &inner.fail_mode)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Introspection`].
#[derive(Clone, Debug)]
#[must_use]
pub struct IntrospectionBuilder {
    url: String,
    client_id: String,
    auth: ClientAuth,
    timeout: Duration,
    cache_ttl: Duration,
    cache_capacity: usize,
    fail_mode: IntrospectionFailMode,
    issuers: Vec<String>,
    audiences: Vec<String>,
    namespace_claim: String,
    leeway: u64,
    client: Option<reqwest::Client>,
}

impl Introspection {
    /// The endpoint `url`, asked as the client `client_id` authenticating
    /// with `auth`.
    pub fn builder(
        url: impl Into<String>,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> IntrospectionBuilder {
        IntrospectionBuilder {
            url: url.into(),
            client_id: client_id.into(),
            auth,
            timeout: Duration::from_secs(5),
            cache_ttl: DEFAULT_INTROSPECTION_CACHE_TTL,
            cache_capacity: 100_000,
            fail_mode: IntrospectionFailMode::Closed,
            issuers: Vec::new(),
            audiences: Vec::new(),
            namespace_claim: "namespace".to_owned(),
            leeway: 30,
            client: None,
        }
    }

    /// How many answers are cached now (fresh ones).
    #[must_use]
    pub fn cached_tokens(&self) -> usize {
        self.inner.fresh.len()
    }

    fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    /// Checks `token`: from the cache, else by asking the endpoint.
    pub(crate) fn verify(&self, token: &str) -> NowOrLater<Result<Verified, Failure>> {
        let inner = &*self.inner;
        let now = self.now();
        let key = inner.fresh.key(token);
        if let Some(verified) = inner.fresh.get(key, now) {
            return NowOrLater::Now(Ok(verified));
        }
        if inner.inactive.seen(u128::from(key.index), now) {
            return NowOrLater::Now(Err(inactive()));
        }
        let this = self.clone();
        let token = token.to_owned();
        NowOrLater::Later(Box::pin(async move { this.ask(&token).await }))
    }

    async fn ask(&self, token: &str) -> Result<Verified, Failure> {
        let inner = &*self.inner;
        let answer = match tokio::time::timeout(inner.timeout, self.request(token)).await {
            Ok(Ok(answer)) => answer,
            failed => {
                let why = match failed {
                    Ok(Err(why)) => why,
                    _ => "the introspection endpoint did not answer in time",
                };
                tracing::warn!(reason = why, "token introspection failed");
                let now = self.now();
                if inner.fail_mode == IntrospectionFailMode::Cached
                    && let Some(verified) = inner.last_known.get(inner.last_known.key(token), now)
                {
                    return Ok(verified);
                }
                return Err(Failure::new(
                    Reason::AuthUnavailable,
                    "the token cannot be checked now",
                    None,
                ));
            }
        };
        let now = self.now();
        let key = inner.fresh.key(token);
        if answer.get("active").and_then(Value::as_bool) != Some(true) {
            inner
                .inactive
                .record(u128::from(key.index), now + INACTIVE_TTL, now);
            return Err(inactive());
        }
        if !inner.issuers.is_empty() {
            let iss = answer.get("iss").and_then(Value::as_str);
            if !iss.is_some_and(|iss| inner.issuers.iter().any(|i| i == iss)) {
                return Err(invalid("the token's issuer is not accepted"));
            }
        }
        if !inner.audiences.is_empty() {
            let audiences = match answer.get("aud") {
                Some(Value::String(aud)) => vec![aud.as_str()],
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !audiences
                .iter()
                .any(|aud| inner.audiences.iter().any(|a| a == aud))
            {
                return Err(invalid("the token is not meant for this server (aud)"));
            }
        }
        let subject = answer
            .get("sub")
            .or_else(|| answer.get("client_id"))
            .and_then(Value::as_str);
        let (verified, exp) = verified_from_claims(
            &answer,
            subject,
            Claims {
                now,
                leeway: inner.leeway,
                namespace_claim: &inner.namespace_claim,
                method: AuthMethod::Introspected,
                kid: None,
            },
        )?;
        let until = exp.min(now.saturating_add(inner.cache_ttl.as_secs()));
        let generation = inner.fresh.generation();
        inner
            .fresh
            .insert(key, verified.clone(), until, 0, now, generation);
        if inner.fail_mode == IntrospectionFailMode::Cached {
            let key = inner.last_known.key(token);
            let generation = inner.last_known.generation();
            inner
                .last_known
                .insert(key, verified.clone(), exp, 0, now, generation);
        }
        Ok(verified)
    }

    /// One request to the endpoint; its JSON object, or why not.
    async fn request(&self, token: &str) -> Result<Map<String, Value>, &'static str> {
        let form = vec![
            ("token", token.to_owned()),
            ("token_type_hint", "access_token".to_owned()),
        ];
        let answer = self
            .inner
            .endpoint
            .post(form, self.now())
            .await
            .map_err(|e| e.why())?;
        if !answer.status.is_success() {
            return Err("the introspection endpoint refused the request");
        }
        Ok(answer.body)
    }
}

fn inactive() -> Failure {
    invalid("the token is not active")
}

fn invalid(detail: &'static str) -> Failure {
    Failure::new(Reason::InvalidCredentials, detail, Some("invalid_token"))
}

impl IntrospectionBuilder {
    /// The time limit of one request (5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The longest an answer is reused (60 s; never past the token's
    /// `exp`). Zero asks every time.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// About how many answers are cached (100 000).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// What happens while the endpoint cannot answer.
    pub fn fail_mode(mut self, mode: IntrospectionFailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Accepts only answers whose `iss` is one of `issuers` (none: any).
    pub fn issuer<I, T>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.issuers.extend(issuers.into_iter().map(Into::into));
        self
    }

    /// Accepts only answers whose `aud` names one of `audiences` (none:
    /// any).
    pub fn audience<I, T>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// The claim that names the caller's namespace (`namespace`).
    pub fn namespace_claim(mut self, claim: impl Into<String>) -> Self {
        self.namespace_claim = claim.into();
        self
    }

    /// Clock-skew allowance on `exp` and `nbf` (30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.as_secs();
        self
    }

    /// The HTTP client to ask with (proxies, extra root certificates).
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Reads the time (Unix seconds) from `clock`.
    pub fn clock(self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> IntrospectionClocked {
        IntrospectionClocked {
            builder: self,
            clock: Arc::new(clock),
        }
    }

    /// The introspection client.
    ///
    /// # Errors
    ///
    /// The URL is not `http(s)://`, the client id is empty, a secret is
    /// empty, or the HTTP client cannot be built.
    pub fn build(self) -> Result<Introspection, ConfigError> {
        self.build_with(Arc::new(super::oauth::system_now))
    }

    fn build_with(
        self,
        clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<Introspection, ConfigError> {
        let endpoint = Endpoint::new(
            Names {
                url: "MCP_INTROSPECTION_URL",
                client_id: "MCP_INTROSPECTION_CLIENT_ID",
                client_secret: "MCP_INTROSPECTION_CLIENT_SECRET",
            },
            self.url,
            self.client_id,
            self.auth,
            self.client,
            self.issuers.clone(),
        )?;
        let capacity = if self.cache_ttl.is_zero() {
            0
        } else {
            self.cache_capacity
        };
        Ok(Introspection {
            inner: Arc::new(Inner {
                endpoint,
                timeout: self.timeout,
                cache_ttl: self.cache_ttl,
                fail_mode: self.fail_mode,
                issuers: self.issuers,
                audiences: self.audiences,
                namespace_claim: self.namespace_claim,
                leeway: self.leeway,
                fresh: TokenCache::new(capacity),
                last_known: TokenCache::new(match self.fail_mode {
                    IntrospectionFailMode::Cached => self.cache_capacity,
                    IntrospectionFailMode::Closed => 0,
                }),
                inactive: ReplayCache::new(self.cache_capacity.clamp(16, 10_000)),
                clock,
            }),
        })
    }
}

/// An [`IntrospectionBuilder`] with its own clock (tests).
#[derive(Clone)]
#[must_use]
pub struct IntrospectionClocked {
    builder: IntrospectionBuilder,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for IntrospectionClocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.builder.fmt(f)
    }
}

impl IntrospectionClocked {
    /// The introspection client, reading this clock.
    ///
    /// # Errors
    ///
    /// As [`IntrospectionBuilder::build`].
    pub fn build(self) -> Result<Introspection, ConfigError> {
        self.builder.build_with(self.clock)
    }
}
