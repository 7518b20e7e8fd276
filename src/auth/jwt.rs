//! JSON Web Token verification: keys, claims, the verified-token cache.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::cache::{CacheKey, TokenCache};
use super::keys::{ALGORITHMS, KeySet, MIN_HMAC_SECRET_BYTES};
use super::verified::{Confirmation, Verified};
use crate::ConfigError;
use crate::guard::NowOrLater;
use crate::principal::{AuthMethod, Principal};
use crate::reject::Reason;

/// Tokens longer than this are refused before any parsing (8 KiB).
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Default allowance for clock skew on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Default number of verified tokens remembered.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a credential was refused, before it becomes a
/// [`Rejection`](crate::reject::Rejection): what to tell the client (including the
/// RFC 6750 `error` of the challenge) and what to audit. `detail` is safe to
/// show and to log: it never contains the token, a key or a signature.
#[derive(Clone, Debug)]
pub struct Failure {
    pub(crate) reason: Reason,
    pub(crate) detail: &'static str,
    /// The `error` of the `WWW-Authenticate` challenge.
    pub(crate) oauth_error: Option<&'static str>,
    pub(crate) subject: Option<String>,
    pub(crate) kid: Option<String>,
    /// The `error` belongs to the `DPoP` challenge (RFC 9449 §7.1), not to
    /// the `Bearer` one.
    pub(crate) dpop: bool,
}

impl Failure {
    /// A refusal with the challenge `error` given.
    pub(crate) fn new(
        reason: Reason,
        detail: &'static str,
        oauth_error: Option<&'static str>,
    ) -> Self {
        Self {
            reason,
            detail,
            oauth_error,
            subject: None,
            kid: None,
            dpop: false,
        }
    }

    /// A refusal of a DPoP proof (`invalid_dpop_proof` on the `DPoP`
    /// challenge).
    pub(crate) fn proof(detail: &'static str) -> Self {
        Self {
            dpop: true,
            ..Self::new(
                Reason::InvalidCredentials,
                detail,
                Some("invalid_dpop_proof"),
            )
        }
    }

    /// The same refusal, its `error` on the `DPoP` challenge.
    pub(crate) fn on_dpop(mut self) -> Self {
        self.dpop = true;
        self
    }

    /// A token's refusal: `invalid_token`, unless the keys are unavailable.
    fn token(reason: Reason, detail: &'static str) -> Self {
        Self::new(
            reason,
            detail,
            (reason != Reason::AuthUnavailable).then_some("invalid_token"),
        )
    }

    fn invalid(detail: &'static str) -> Self {
        Self::token(Reason::InvalidCredentials, detail)
    }
    fn kid(mut self, kid: Option<&str>) -> Self {
        self.kid = kid.map(str::to_owned);
        self
    }
}

enum Keys {
    Static(RwLock<Arc<KeySet>>),
    #[cfg(feature = "jwks-url")]
    Remote(super::jwks::RemoteJwks),
}

struct Inner {
    keys: Keys,
    /// One prepared `Validation` per algorithm (the algorithm list is the
    /// only difference), so that no request clones one.
    validations: Box<[(Algorithm, Validation)]>,
    leeway: u64,
    namespace_claim: Box<str>,
    max_token_bytes: usize,
    cache: TokenCache,
    clock: Clock,
    /// When static keys were built or last replaced.
    keys_at: RwLock<SystemTime>,
}

/// Verifies JSON Web Tokens and turns their claims into a [`Principal`].
///
/// The algorithm is pinned by the key, never chosen by the token: an HMAC
/// secret verifies only the HS algorithm it was configured with, a PEM key
/// only its configured algorithm, and a JWK only the algorithm its `alg`
/// names (or, without `alg`, the algorithms of its key type). `alg: none`
/// is never accepted, and an HS256 token "signed" with an RSA public key is
/// refused because the RSA key does not allow HS256. Keys from a JWKS URL
/// are public keys only: a document holding a shared secret (`oct`) is
/// refused, and HS* tokens are refused outright. A token with a `crit`
/// header is refused (RFC 7515 §4.1.11: no extension is understood here).
///
/// Claims: `sub` (required) is the subject; the namespace claim
/// (`namespace` unless [`namespace_claim`](JwtAuthBuilder::namespace_claim)
/// says otherwise); `roles` (array or space-separated string); scopes from
/// `scope` (space-separated), `scp` and `permissions` (arrays). `exp` is
/// required; `exp` and `nbf` are checked with a leeway (30 s by default);
/// `iss` and `aud` when configured.
///
/// Verified tokens are cached (10 000 by default) until their `exp`, found
/// by a keyed hash of their signature and matched on their whole signed
/// part (the signature itself is never stored); a key rotation drops the
/// entries of removed keys.
///
/// Cloning is cheap and clones share keys and cache.
#[derive(Clone)]
pub struct JwtAuth {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("issuers", &self.inner.validations.first().map(|v| &v.1.iss))
            .field(
                "audiences",
                &self.inner.validations.first().map(|v| &v.1.aud),
            )
            .field("leeway", &self.inner.leeway)
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

enum Source {
    Hmac(Vec<u8>, Algorithm),
    Pem(Vec<u8>, Algorithm),
    Jwks(Vec<u8>),
    #[cfg(feature = "jwks-url")]
    Url(super::jwks::JwksUrl),
}

/// Builds a [`JwtAuth`]; see [`JwtAuth::builder`].
#[must_use]
pub struct JwtAuthBuilder {
    source: Option<Result<Source, ConfigError>>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    namespace_claim: String,
    max_token_bytes: usize,
    cache_capacity: usize,
    allow_short_secret: bool,
    clock: Option<Clock>,
}

impl std::fmt::Debug for JwtAuthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthBuilder")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .finish_non_exhaustive()
    }
}

impl JwtAuth {
    /// Starts a verifier; name one key source, then [`build`](JwtAuthBuilder::build).
    pub fn builder() -> JwtAuthBuilder {
        JwtAuthBuilder {
            source: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            namespace_claim: "namespace".to_owned(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            allow_short_secret: false,
            clock: None,
        }
    }

    pub(crate) fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    /// Number of tokens in the verified-token cache.
    #[must_use]
    pub fn cached_tokens(&self) -> usize {
        self.inner.cache.len()
    }

    /// Cache hits and misses since start.
    #[must_use]
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.inner.cache.hits(), self.inner.cache.misses())
    }

    /// Fetches the signing keys now (JWKS URL sources); other sources are
    /// ready at once. Call it at start-up to fail fast and to spare the
    /// first request the fetch.
    ///
    /// # Errors
    ///
    /// When the JWKS URL cannot be fetched or holds no usable key.
    pub async fn prefetch(&self) -> Result<(), ConfigError> {
        match &self.inner.keys {
            Keys::Static(_) => Ok(()),
            #[cfg(feature = "jwks-url")]
            Keys::Remote(remote) => remote.fetch_now(&self.inner.cache).await.map(|_| ()),
        }
    }

    /// When the signing keys in use were loaded: at build for a secret, a
    /// PEM key or a JWKS document (or at the last
    /// [`replace_jwks`](Self::replace_jwks)), at the last successful fetch
    /// for a JWKS URL (`None` before the first).
    #[must_use]
    pub fn keys_loaded_at(&self) -> Option<SystemTime> {
        match &self.inner.keys {
            Keys::Static(_) => Some(*self.inner.keys_at.read().unwrap_or_else(|e| e.into_inner())),
            #[cfg(feature = "jwks-url")]
            Keys::Remote(remote) => remote
                .fetched_at()
                .and_then(|at| SystemTime::now().checked_sub(at.elapsed())),
        }
    }

    /// Replaces the keys of a verifier built from a secret, a PEM key or a
    /// JWKS document with those of a new JWKS document (a hot reload of a
    /// JWKS file). Cached tokens of removed keys are dropped at once. On an
    /// error the old keys stay.
    ///
    /// # Errors
    ///
    /// When the document is not a JWKS with a usable key, or when this
    /// verifier reads its keys from a URL.
    pub fn replace_jwks(&self, jwks_json: &[u8]) -> Result<(), ConfigError> {
        match &self.inner.keys {
            Keys::Static(lock) => {
                let old = lock.read().unwrap_or_else(|e| e.into_inner()).clone();
                let (set, _) = KeySet::from_jwks_json(jwks_json, Some(&old))
                    .inspect_err(|_| crate::telemetry::jwks_refresh(false))?;
                let kept: Vec<u64> = set.ids().collect();
                *lock.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                self.inner.cache.retain_keys(&kept);
                *self
                    .inner
                    .keys_at
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = SystemTime::now();
                crate::telemetry::jwks_refresh(true);
                Ok(())
            }
            #[cfg(feature = "jwks-url")]
            Keys::Remote(_) => Err(ConfigError::new(
                "jwks",
                "this verifier fetches its keys from a URL",
            )),
        }
    }

    /// Verifies `token`. A cache hit answers without any signature check.
    pub(crate) fn verify(&self, token: &str) -> NowOrLater<Result<Verified, Failure>> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_bytes {
            return NowOrLater::Now(Err(Failure::invalid("the token is too large")));
        }
        let now = self.now();
        let digest = inner.cache.key(token);
        if let Some(verified) = inner.cache.get(digest, now) {
            return NowOrLater::Now(Ok(verified));
        }
        // Before the keys are read: a rotation after this point keeps the
        // result out of the cache.
        let generation = inner.cache.generation();
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            Err(_) => return NowOrLater::Now(Err(Failure::invalid("the token is malformed"))),
        };
        // RFC 7515 §4.1.11: a recipient must refuse a token whose `crit`
        // names an extension it does not understand, and `crit` must not be
        // empty nor name a standard header. This verifier understands no
        // extension, so any `crit` is refused.
        if header.crit.is_some() {
            return NowOrLater::Now(Err(Failure::invalid(
                "the token names critical header extensions (crit) this server does not support",
            )));
        }
        // Keys fetched from a URL are public keys: an HS* token is never
        // verified against one (algorithm confusion), nor does it cause a
        // fetch.
        #[cfg(feature = "jwks-url")]
        if matches!(inner.keys, Keys::Remote(_))
            && super::keys::HMAC_ALGORITHMS.contains(&header.alg)
        {
            return NowOrLater::Now(Err(Failure::invalid(
                "the token's algorithm is not allowed with keys from a URL",
            )
            .kid(header.kid.as_deref())));
        }
        let keys = match &inner.keys {
            Keys::Static(lock) => lock.read().unwrap_or_else(|e| e.into_inner()).clone(),
            #[cfg(feature = "jwks-url")]
            Keys::Remote(remote) => match remote.current() {
                Some((keys, due))
                    if header
                        .kid
                        .as_deref()
                        .is_none_or(|kid| keys.by_kid(kid).is_some()) =>
                {
                    if due {
                        self.spawn_refresh();
                    }
                    keys
                }
                // No keys yet, stale keys, or a `kid` we have not seen: fetch
                // (at most once per minimum interval) and try again.
                _ => {
                    let this = self.clone();
                    let token = token.to_owned();
                    return NowOrLater::Later(Box::pin(async move {
                        let keys = match this.remote() {
                            Some(remote) => remote.refetch(&this.inner.cache).await,
                            None => None,
                        };
                        match keys {
                            Some(keys) => {
                                let at = (this.inner.cache.key(&token), generation);
                                this.verify_with(&token, &header, &keys, at, this.now())
                            }
                            None => Err(Failure::token(
                                Reason::AuthUnavailable,
                                "the signing keys are unavailable",
                            )),
                        }
                    }));
                }
            },
        };
        NowOrLater::Now(self.verify_with(token, &header, &keys, (digest, generation), now))
    }

    /// Refreshes remote keys in the background, when a Tokio runtime is
    /// around (it is, inside a server); otherwise the next unknown `kid` or
    /// the staleness limit brings a fetch.
    #[cfg(feature = "jwks-url")]
    fn spawn_refresh(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.remote().is_some_and(|r| r.begin_refresh()) {
            return;
        }
        let this = self.clone();
        runtime.spawn(async move {
            if let Some(remote) = this.remote() {
                remote.refresh(&this.inner.cache).await;
            }
        });
    }

    #[cfg(feature = "jwks-url")]
    fn remote(&self) -> Option<&super::jwks::RemoteJwks> {
        match &self.inner.keys {
            Keys::Remote(remote) => Some(remote),
            Keys::Static(_) => None,
        }
    }

    fn verify_with(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        keys: &KeySet,
        (digest, generation): (CacheKey<'_>, u64),
        now: u64,
    ) -> Result<Verified, Failure> {
        let inner = &*self.inner;
        let kid = header.kid.as_deref();
        let key = match kid {
            Some(kid) => keys
                .by_kid(kid)
                .ok_or_else(|| Failure::invalid("the token names an unknown key").kid(Some(kid)))?,
            None => {
                let mut candidates = keys.keys.iter().filter(|k| k.allows(header.alg));
                match (candidates.next(), candidates.next()) {
                    (Some(key), None) => key,
                    (None, _) => {
                        return Err(Failure::invalid(
                            "the token's algorithm is not allowed for any key",
                        ));
                    }
                    (Some(_), Some(_)) => {
                        return Err(Failure::invalid(
                            "the token names no key (kid) and several keys could verify it",
                        ));
                    }
                }
            }
        };
        if !key.allows(header.alg) {
            return Err(
                Failure::invalid("the token's algorithm is not allowed for its key").kid(kid),
            );
        }
        let Some((_, validation)) = inner.validations.iter().find(|(a, _)| *a == header.alg) else {
            return Err(Failure::invalid("the token's algorithm is not supported").kid(kid));
        };
        let claims =
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation) {
                Ok(data) => data.claims,
                Err(e) => {
                    let detail = match e.kind() {
                        ErrorKind::InvalidSignature => "the token's signature is not valid",
                        ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
                        ErrorKind::InvalidAudience => {
                            "the token is not meant for this server (aud)"
                        }
                        ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                        ErrorKind::InvalidAlgorithm => "the token's algorithm is not allowed",
                        _ => "the token is not valid",
                    };
                    return Err(Failure::invalid(detail).kid(kid));
                }
            };
        // RFC 7519 §4.1.1: `iss` is one string; an array naming the issuer
        // among others is not an issuer.
        if validation.iss.is_some() && !claims.get("iss").is_some_and(Value::is_string) {
            return Err(Failure::invalid("the token's issuer is not accepted").kid(kid));
        }
        let subject = claims.get("sub").and_then(Value::as_str);
        let (verified, exp) = verified_from_claims(
            &claims,
            subject,
            Claims {
                now,
                leeway: inner.leeway,
                namespace_claim: &inner.namespace_claim,
                method: AuthMethod::Jwt,
                kid: key.kid.as_deref().or(kid),
            },
        )
        .map_err(|failure| failure.kid(kid))?;
        inner
            .cache
            .insert(digest, verified.clone(), exp, key.id, now, generation);
        Ok(verified)
    }
}

/// How a token's claims are read into a [`Verified`], after the token
/// itself was checked (signature, or an introspection answer).
pub(crate) struct Claims<'a> {
    pub(crate) now: u64,
    pub(crate) leeway: u64,
    pub(crate) namespace_claim: &'a str,
    pub(crate) method: AuthMethod,
    /// The key id to record on the principal, if any.
    pub(crate) kid: Option<&'a str>,
}

/// The principal and binding of a token whose `claims` are trusted, with
/// its `exp`: the one reading of `exp`, `nbf`, `cnf`, the subject, the
/// namespace claim, roles and scopes, for JWTs and introspected tokens
/// alike. `subject` is the claim that names the caller (`sub`, or an
/// introspected token's `client_id`).
pub(crate) fn verified_from_claims(
    claims: &Map<String, Value>,
    subject: Option<&str>,
    read: Claims<'_>,
) -> Result<(Verified, u64), Failure> {
    let fail = |reason, detail| Failure {
        subject: subject.map(str::to_owned),
        ..Failure::token(reason, detail)
    };
    let exp = match claims.get("exp").and_then(Value::as_u64) {
        Some(exp) => exp,
        None => {
            return Err(fail(
                Reason::InvalidCredentials,
                "the token's exp is not a number",
            ));
        }
    };
    if read.now >= exp.saturating_add(read.leeway) {
        return Err(fail(Reason::TokenExpired, "the token has expired"));
    }
    if let Some(nbf) = claims.get("nbf") {
        match nbf.as_u64() {
            Some(nbf) if read.now.saturating_add(read.leeway) >= nbf => {}
            Some(_) => {
                return Err(fail(
                    Reason::InvalidCredentials,
                    "the token is not valid yet",
                ));
            }
            None => {
                return Err(fail(
                    Reason::InvalidCredentials,
                    "the token's nbf is not a number",
                ));
            }
        }
    }
    let cnf = Confirmation::of_claims(claims)
        .map_err(|detail| fail(Reason::InvalidCredentials, detail))?;
    let Some(subject) = subject.filter(|s| !s.is_empty()) else {
        return Err(fail(
            Reason::InvalidCredentials,
            "the token has no subject (sub)",
        ));
    };
    let mut builder = Principal::builder(subject, read.method).expires_at_unix(exp);
    if let Some(kid) = read.kid {
        builder = builder.key_id(kid);
    }
    if let Some(ns) = claims.get(read.namespace_claim).and_then(Value::as_str) {
        builder = builder.namespace(ns);
    }
    builder = builder
        .roles(strings(claims.get("roles")))
        .scopes(strings(claims.get("scope")))
        .scopes(strings(claims.get("scp")))
        .scopes(strings(claims.get("permissions")));
    Ok((
        Verified {
            principal: builder.build(),
            cnf,
        },
        exp,
    ))
}

/// A claim holding strings: an array of strings, or one space-separated
/// string. Anything else counts as empty.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

impl JwtAuthBuilder {
    fn set(mut self, source: Result<Source, ConfigError>) -> Self {
        self.source = Some(match self.source {
            None => source,
            Some(_) => Err(ConfigError::new(
                "jwt keys",
                "configure exactly one key source (secret, public key, JWKS file or JWKS URL)",
            )),
        });
        self
    }

    /// An HMAC shared secret for `algorithm` (HS256, HS384 or HS512). At
    /// least 32 bytes unless [`allow_short_secret`](Self::allow_short_secret).
    pub fn hmac_secret(self, secret: impl AsRef<[u8]>, algorithm: Algorithm) -> Self {
        let secret = secret.as_ref().to_vec();
        self.set(Ok(Source::Hmac(secret, algorithm)))
    }

    /// Accepts HMAC secrets shorter than 32 bytes. For development only: a
    /// short secret can be brute-forced from any token signed with it.
    pub fn allow_short_secret(mut self) -> Self {
        self.allow_short_secret = true;
        self
    }

    /// A PEM public key (RSA, EC or Ed25519) for `algorithm`.
    pub fn public_key_pem(self, pem: impl AsRef<[u8]>, algorithm: Algorithm) -> Self {
        let pem = pem.as_ref().to_vec();
        self.set(Ok(Source::Pem(pem, algorithm)))
    }

    /// Reads a PEM public key file for `algorithm`.
    pub fn public_key_file(self, path: impl AsRef<Path>, algorithm: Algorithm) -> Self {
        let read = read_file("jwt public key file", path.as_ref());
        self.set(read.map(|pem| Source::Pem(pem, algorithm)))
    }

    /// A JWKS document (`{"keys":[...]}`).
    pub fn jwks(self, json: impl AsRef<[u8]>) -> Self {
        let json = json.as_ref().to_vec();
        self.set(Ok(Source::Jwks(json)))
    }

    /// Reads a JWKS document from a file ([`JwtAuth::replace_jwks`] swaps in
    /// a new one).
    pub fn jwks_file(self, path: impl AsRef<Path>) -> Self {
        let read = read_file("jwks file", path.as_ref());
        self.set(read.map(Source::Jwks))
    }

    /// Fetches keys from a JWKS URL (feature `jwks-url`).
    #[cfg(feature = "jwks-url")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks-url")))]
    pub fn jwks_url(self, source: super::jwks::JwksUrl) -> Self {
        self.set(Ok(Source::Url(source)))
    }

    /// Accepts only tokens whose `iss` is one of `issuers`.
    pub fn issuer<I, T>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.issuers.extend(issuers.into_iter().map(Into::into));
        self
    }

    /// Accepts only tokens whose `aud` names one of `audiences` (for an MCP
    /// server, its own resource URI, RFC 8707).
    pub fn audience<I, T>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// Allowance for clock skew on `exp` and `nbf` (30 s by default).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The claim that names the principal's namespace (`namespace`).
    pub fn namespace_claim(mut self, claim: impl Into<String>) -> Self {
        self.namespace_claim = claim.into();
        self
    }

    /// Longest accepted token, checked before any parsing (8 KiB).
    pub fn max_token_bytes(mut self, max: usize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// How many verified tokens to remember (10 000; 0 turns the cache off).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// The time source for `exp`/`nbf` checks and cache expiry, in seconds
    /// since the Unix epoch. The system clock unless set; for tests.
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the settings and loads the keys.
    ///
    /// # Errors
    ///
    /// A missing or doubled key source, a short HMAC secret, a key that does
    /// not parse or does not fit its algorithm, a JWKS with no usable key.
    pub fn build(self) -> Result<JwtAuth, ConfigError> {
        super::ensure_crypto_provider();
        let source = self.source.unwrap_or_else(|| {
            Err(ConfigError::new(
                "jwt keys",
                "no key source: configure a secret, a public key, a JWKS file or a JWKS URL",
            ))
        })?;
        let cache = TokenCache::new(self.cache_capacity);
        let keys = match source {
            Source::Hmac(secret, alg) => {
                if secret.len() < MIN_HMAC_SECRET_BYTES && !self.allow_short_secret {
                    return Err(ConfigError::new(
                        "jwt secret",
                        format!(
                            "the HMAC secret is {} bytes; at least {MIN_HMAC_SECRET_BYTES} are required",
                            secret.len()
                        ),
                    ));
                }
                Keys::Static(RwLock::new(Arc::new(KeySet::hmac(&secret, alg)?)))
            }
            Source::Pem(pem, alg) => Keys::Static(RwLock::new(Arc::new(KeySet::pem(&pem, alg)?))),
            Source::Jwks(json) => Keys::Static(RwLock::new(Arc::new(
                KeySet::from_jwks_json(&json, None)?.0,
            ))),
            #[cfg(feature = "jwks-url")]
            Source::Url(url) => Keys::Remote(super::jwks::RemoteJwks::new(url)?),
        };
        let mut template = Validation::new(Algorithm::HS256);
        // exp and nbf are checked against our own clock, with our leeway.
        template.validate_exp = false;
        template.validate_nbf = false;
        template.leeway = 0;
        let mut required = vec!["exp"];
        if !self.issuers.is_empty() {
            template.set_issuer(&self.issuers);
            required.push("iss");
        }
        if self.audiences.is_empty() {
            template.validate_aud = false;
        } else {
            template.set_audience(&self.audiences);
            required.push("aud");
        }
        template.set_required_spec_claims(&required);
        let validations = ALGORITHMS
            .iter()
            .map(|&alg| {
                let mut validation = template.clone();
                validation.algorithms = vec![alg];
                (alg, validation)
            })
            .collect();
        Ok(JwtAuth {
            inner: Arc::new(Inner {
                keys,
                validations,
                leeway: self.leeway.as_secs(),
                namespace_claim: self.namespace_claim.into_boxed_str(),
                max_token_bytes: self.max_token_bytes,
                cache,
                clock: self.clock.unwrap_or_else(|| Arc::new(system_clock)),
                keys_at: RwLock::new(SystemTime::now()),
            }),
        })
    }
}

fn read_file(setting: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(setting, format!("cannot read {}: {e}", path.display())))
}
