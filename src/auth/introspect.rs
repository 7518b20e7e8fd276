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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::cache::TokenCache;
use super::jwt::{Claims, Failure, verified_from_claims};
use super::verified::Verified;
use crate::ConfigError;
use crate::guard::NowOrLater;
use crate::principal::AuthMethod;
use crate::reject::Reason;
use crate::replay::ReplayCache;

/// Largest introspection answer read (64 KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Default [`IntrospectionBuilder::cache_ttl`].
pub const DEFAULT_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(60);
/// How long an inactive answer is remembered.
const INACTIVE_TTL: u64 = 10;

/// How the resource server authenticates to the introspection endpoint.
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`).
    SecretBasic(String),
    /// The client id and secret in the form (`client_secret_post`).
    SecretPost(String),
    /// A JWT signed with the client's private key (`private_key_jwt`).
    PrivateKeyJwt {
        /// The signing key.
        key: jsonwebtoken::EncodingKey,
        /// Its algorithm (RS256, ES256, …).
        algorithm: jsonwebtoken::Algorithm,
        /// The `kid` to name, if the server knows the key by one.
        kid: Option<String>,
    },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SecretBasic(_) => "SecretBasic(..)",
            Self::SecretPost(_) => "SecretPost(..)",
            Self::PrivateKeyJwt { .. } => "PrivateKeyJwt(..)",
        })
    }
}

impl ClientAuth {
    /// `private_key_jwt` with the PEM private key `pem` (RSA or EC P-256 /
    /// P-384, PKCS#8 or the traditional forms).
    ///
    /// # Errors
    ///
    /// The PEM holds no RSA or EC private key.
    pub fn private_key_pem(pem: &[u8], kid: Option<String>) -> Result<Self, ConfigError> {
        use jsonwebtoken::{Algorithm, EncodingKey};
        let text = std::str::from_utf8(pem).unwrap_or_default();
        let (key, algorithm) = if text.contains("RSA PRIVATE KEY")
            || (text.contains("PRIVATE KEY") && EncodingKey::from_rsa_pem(pem).is_ok())
        {
            (EncodingKey::from_rsa_pem(pem), Algorithm::RS256)
        } else {
            (EncodingKey::from_ec_pem(pem), Algorithm::ES256)
        };
        let key = key.map_err(|_| {
            ConfigError::new(
                "MCP_INTROSPECTION_CLIENT_KEY_FILE",
                "not an RSA or EC private key in PEM",
            )
        })?;
        Ok(Self::PrivateKeyJwt {
            key,
            algorithm,
            kid,
        })
    }
}

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
    url: String,
    client_id: String,
    auth: ClientAuth,
    client: reqwest::Client,
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
            .field("url", &crate::url_text::redact(&inner.url))
            .field("client_id", &inner.client_id)
            .field("auth", &inner.auth)
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
        let inner = &*self.inner;
        let mut form = vec![
            ("token", token.to_owned()),
            ("token_type_hint", "access_token".to_owned()),
        ];
        let mut request = inner.client.post(&inner.url);
        match &inner.auth {
            ClientAuth::SecretBasic(secret) => {
                // RFC 6749 §2.3.1: both form-encoded before Basic.
                let pair = format!("{}:{}", form_encode(&inner.client_id), form_encode(secret));
                request = request.header(
                    http::header::AUTHORIZATION,
                    format!("Basic {}", STANDARD.encode(pair)),
                );
            }
            ClientAuth::SecretPost(secret) => {
                form.push(("client_id", inner.client_id.clone()));
                form.push(("client_secret", secret.clone()));
            }
            ClientAuth::PrivateKeyJwt {
                key,
                algorithm,
                kid,
            } => {
                let assertion = self.assertion(key, *algorithm, kid.clone())?;
                form.push(("client_id", inner.client_id.clone()));
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        let body: String = form
            .iter()
            .map(|(name, value)| format!("{name}={}", form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let response = request
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|_| "the introspection endpoint cannot be reached")?;
        if !response.status().is_success() {
            return Err("the introspection endpoint refused the request");
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
        {
            return Err("the introspection answer is too large");
        }
        let mut bytes = Vec::new();
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| "the introspection answer was cut")?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err("the introspection answer is too large");
            }
            bytes.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(answer)) => Ok(answer),
            _ => Err("the introspection answer is not a JSON object"),
        }
    }

    /// A `private_key_jwt` client assertion, valid for a minute.
    fn assertion(
        &self,
        key: &jsonwebtoken::EncodingKey,
        algorithm: jsonwebtoken::Algorithm,
        kid: Option<String>,
    ) -> Result<String, &'static str> {
        let inner = &*self.inner;
        let now = self.now();
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|_| "no randomness for a client assertion")?;
        let mut audience = vec![Value::String(inner.url.clone())];
        audience.extend(inner.issuers.iter().cloned().map(Value::String));
        let claims = serde_json::json!({
            "iss": inner.client_id,
            "sub": inner.client_id,
            "aud": audience,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "iat": now,
            "exp": now + 60,
        });
        let mut header = jsonwebtoken::Header::new(algorithm);
        header.kid = kid;
        jsonwebtoken::encode(&header, &claims, key)
            .map_err(|_| "the client assertion cannot be signed")
    }
}

fn inactive() -> Failure {
    invalid("the token is not active")
}

fn invalid(detail: &'static str) -> Failure {
    Failure::new(Reason::InvalidCredentials, detail, Some("invalid_token"))
}

/// `application/x-www-form-urlencoded` for one name or value: unreserved
/// characters as they are, everything else percent-encoded.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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
        let clock: Arc<dyn Fn() -> u64 + Send + Sync> = Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        self.build_with(clock)
    }

    fn build_with(
        self,
        clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<Introspection, ConfigError> {
        super::ensure_crypto_provider();
        let bad = |setting: &'static str, why: &str| ConfigError::new(setting, why.to_owned());
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(bad("MCP_INTROSPECTION_URL", "not an http(s) URL"));
        }
        if self.client_id.is_empty() {
            return Err(bad("MCP_INTROSPECTION_CLIENT_ID", "empty"));
        }
        if matches!(&self.auth, ClientAuth::SecretBasic(s) | ClientAuth::SecretPost(s) if s.is_empty())
        {
            return Err(bad("MCP_INTROSPECTION_CLIENT_SECRET", "empty"));
        }
        let client = match self.client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| bad("MCP_INTROSPECTION_URL", &e.to_string()))?,
        };
        let capacity = if self.cache_ttl.is_zero() {
            0
        } else {
            self.cache_capacity
        };
        Ok(Introspection {
            inner: Arc::new(Inner {
                url: self.url,
                client_id: self.client_id,
                auth: self.auth,
                client,
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
