//! Token exchange (RFC 8693; feature `token-exchange`): the caller's
//! access token traded at the authorization server's token endpoint for
//! one meant for an upstream (its `resource`, RFC 8707, and optionally an
//! `audience`), so that a gateway calls upstreams with tokens issued for
//! them and the caller's own token never leaves it.
//!
//! * The endpoint is asked with the gateway's own client credentials
//!   ([`ClientAuth`], as for introspection).
//! * Exchanged tokens are cached per caller token and target, keyed by a
//!   SHA-256 digest of both (the tokens themselves are not kept as keys),
//!   until [`refresh_margin`](TokenExchangeBuilder::refresh_margin) before
//!   they expire; an answer without `expires_in` is used once. The cache is
//!   bounded: a full cache drops expired entries, then the one closest to
//!   its end.
//! * Failures are typed ([`ExchangeError`]): the caller's token refused
//!   (`invalid_grant`, 401), the exchange not allowed (403), the endpoint
//!   unreachable, slow or answering nonsense (502).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::oauth::{ClientAuth, Endpoint, Names, PostError};
use crate::ConfigError;

/// The grant type of a token exchange.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of an OAuth 2.0 access token (subject and issued token).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Default [`TokenExchangeBuilder::refresh_margin`].
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// What a token is asked for: the upstream's `resource` (RFC 8707), and
/// optionally an `audience` and a `scope`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[must_use]
pub struct ExchangeTarget {
    resource: String,
    audience: Option<String>,
    scope: Option<String>,
}

impl ExchangeTarget {
    /// A token for the resource `resource` (an absolute URI, the
    /// upstream's URL).
    pub fn resource(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            audience: None,
            scope: None,
        }
    }

    /// Also names the `audience` the token is for (some servers read this
    /// rather than the resource).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Asks for `scope` (space-separated) rather than the server's default.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

/// A token the exchange issued. It is a credential: its `Debug` shows only
/// its expiry.
#[derive(Clone)]
pub struct ExchangedToken {
    token: Arc<str>,
    expires_at: Option<u64>,
}

impl ExchangedToken {
    /// The issued access token, to send as `Authorization: Bearer …`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// When it expires (Unix seconds), if the server said.
    #[must_use]
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }
}

impl std::fmt::Debug for ExchangedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangedToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Why no token came from the exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The token endpoint could not be reached, did not answer in time, or
    /// answered with a server error. The only failure that says the
    /// endpoint is down (a gateway counts it against the upstream's
    /// breaker).
    Unreachable(&'static str),
    /// The endpoint refused the exchange with the OAuth `error` code
    /// (`invalid_grant`: the caller's token is expired, revoked or not
    /// exchangeable; `invalid_target`, `unauthorized_client`,
    /// `access_denied`, `invalid_scope`: not allowed for this target).
    Refused {
        /// The OAuth error code.
        error: String,
    },
    /// The endpoint answered, but with no usable access token (not JSON,
    /// no `access_token`, a token type other than `Bearer`).
    Invalid(&'static str),
}

impl ExchangeError {
    /// The status to answer the caller with: 401 when the caller's own
    /// token was refused (`invalid_grant`, `invalid_token`), 403 when the
    /// exchange is not allowed, 502 when the endpoint failed (this
    /// gateway's own client credentials refused — `invalid_client` —
    /// included: no fault of the caller).
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Refused { error } => match error.as_str() {
                "invalid_grant" | "invalid_token" => StatusCode::UNAUTHORIZED,
                "invalid_target"
                | "unauthorized_client"
                | "access_denied"
                | "invalid_scope"
                | "invalid_request" => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_GATEWAY,
            },
            Self::Unreachable(_) | Self::Invalid(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether the endpoint itself could not answer.
    #[must_use]
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(why) | Self::Invalid(why) => {
                write!(f, "token exchange failed: {why}")
            }
            Self::Refused { error } => {
                write!(
                    f,
                    "the authorization server refused the token exchange ({error})"
                )
            }
        }
    }
}

impl std::error::Error for ExchangeError {}

/// A token endpoint and how to exchange tokens at it. Built by
/// [`TokenExchange::builder`]; cloning is cheap (clones share the cache).
///
/// With [`AuthLayer::keep_access_token`](super::AuthLayer::keep_access_token)
/// in front, a service exchanges the caller's verified token for one meant
/// for the upstream it is about to call:
///
/// ```no_run
/// use tower_warden::auth::{AccessToken, ClientAuth, ExchangeTarget, TokenExchange};
///
/// # async fn call(request: http::Request<()>) -> Result<(), Box<dyn std::error::Error>> {
/// let exchange = TokenExchange::builder(
///     "https://idp.example.com/oauth2/token",
///     "mcp-gateway",
///     ClientAuth::SecretBasic("the gateway's secret".into()),
/// )
/// .build()?;
/// let caller = request.extensions().get::<AccessToken>().ok_or("no token")?;
/// let target = ExchangeTarget::resource("https://search.internal/mcp");
/// let token = exchange.exchange(caller.as_str(), &target).await?;
/// let authorization = format!("Bearer {}", token.as_str()); // for the upstream
/// # let _ = authorization;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TokenExchange {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    timeout: Duration,
    margin: u64,
    capacity: usize,
    cache: Mutex<HashMap<[u8; 32], ExchangedToken>>,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("TokenExchange")
            .field("url", &crate::url_text::redact(&inner.endpoint.url))
            .field("client_id", &inner.endpoint.client_id)
            .field("auth", inner.endpoint.auth())
            .field("cached", &self.cached_tokens())
            .finish_non_exhaustive()
    }
}

/// Builds a [`TokenExchange`].
#[derive(Clone)]
#[must_use]
pub struct TokenExchangeBuilder {
    url: String,
    client_id: String,
    auth: ClientAuth,
    timeout: Duration,
    margin: Duration,
    capacity: usize,
    issuers: Vec<String>,
    client: Option<reqwest::Client>,
    clock: Option<Arc<dyn Fn() -> u64 + Send + Sync>>,
}

impl std::fmt::Debug for TokenExchangeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchangeBuilder")
            .field("url", &crate::url_text::redact(&self.url))
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("margin", &self.margin)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl TokenExchange {
    /// The token endpoint `url`, asked as the client `client_id`
    /// authenticating with `auth`.
    pub fn builder(
        url: impl Into<String>,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> TokenExchangeBuilder {
        TokenExchangeBuilder {
            url: url.into(),
            client_id: client_id.into(),
            auth,
            timeout: Duration::from_secs(5),
            margin: DEFAULT_REFRESH_MARGIN,
            capacity: 10_000,
            issuers: Vec::new(),
            client: None,
            clock: None,
        }
    }

    /// How many exchanged tokens are cached now.
    #[must_use]
    pub fn cached_tokens(&self) -> usize {
        self.cache().len()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], ExchangedToken>> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A token for `target` in exchange for `subject_token` (the caller's
    /// access token): from the cache while it has more than the refresh
    /// margin to live, else from the token endpoint.
    ///
    /// # Errors
    ///
    /// [`ExchangeError`]: refused, unreachable or an unusable answer.
    pub async fn exchange(
        &self,
        subject_token: &str,
        target: &ExchangeTarget,
    ) -> Result<ExchangedToken, ExchangeError> {
        let inner = &*self.inner;
        let key = cache_key(subject_token, target);
        let now = (inner.clock)();
        if let Some(token) = self.cache().get(&key).filter(|t| self.usable(t, now)) {
            return Ok(token.clone());
        }
        let token = match tokio::time::timeout(inner.timeout, self.ask(subject_token, target)).await
        {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(ExchangeError::Unreachable(
                    "the token endpoint did not answer in time",
                ));
            }
        };
        let now = (inner.clock)();
        if self.usable(&token, now) && inner.capacity > 0 {
            let mut cache = self.cache();
            if cache.len() >= inner.capacity && !cache.contains_key(&key) {
                cache.retain(|_, t| self.usable(t, now));
                if cache.len() >= inner.capacity
                    && let Some(soonest) = cache
                        .iter()
                        .min_by_key(|(_, t)| t.expires_at)
                        .map(|(k, _)| *k)
                {
                    cache.remove(&soonest);
                }
            }
            cache.insert(key, token.clone());
        }
        Ok(token)
    }

    /// Whether `token` may still be handed out at `now`: more than the
    /// margin before its expiry (a token without one is never reused).
    fn usable(&self, token: &ExchangedToken, now: u64) -> bool {
        token
            .expires_at
            .is_some_and(|at| at > now.saturating_add(self.inner.margin))
    }

    async fn ask(
        &self,
        subject_token: &str,
        target: &ExchangeTarget,
    ) -> Result<ExchangedToken, ExchangeError> {
        let inner = &*self.inner;
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT.to_owned()),
            ("subject_token", subject_token.to_owned()),
            ("subject_token_type", ACCESS_TOKEN_TYPE.to_owned()),
            ("requested_token_type", ACCESS_TOKEN_TYPE.to_owned()),
            ("resource", target.resource.clone()),
        ];
        if let Some(audience) = &target.audience {
            form.push(("audience", audience.clone()));
        }
        if let Some(scope) = &target.scope {
            form.push(("scope", scope.clone()));
        }
        let answer =
            inner
                .endpoint
                .post(form, (inner.clock)())
                .await
                .map_err(|error| match error {
                    PostError::Unreachable(why) => ExchangeError::Unreachable(why),
                    PostError::BadAnswer(why) => ExchangeError::Invalid(why),
                })?;
        let body = answer.body;
        if !answer.status.is_success() {
            if answer.status.is_server_error() {
                return Err(ExchangeError::Unreachable(
                    "the token endpoint answered with a server error",
                ));
            }
            let error = body
                .get("error")
                .and_then(Value::as_str)
                .filter(|e| {
                    !e.is_empty() && e.len() <= 64 && e.bytes().all(|b| b.is_ascii_graphic())
                })
                .unwrap_or("invalid_request");
            return Err(ExchangeError::Refused {
                error: error.to_owned(),
            });
        }
        let Some(token) = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        else {
            return Err(ExchangeError::Invalid("the answer has no access_token"));
        };
        if !body
            .get("token_type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
        {
            return Err(ExchangeError::Invalid(
                "the issued token is not a Bearer token",
            ));
        }
        if body
            .get("issued_token_type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
        {
            return Err(ExchangeError::Invalid(
                "the issued token is not an access token",
            ));
        }
        let expires_at = body
            .get("expires_in")
            .and_then(Value::as_u64)
            .map(|secs| (inner.clock)().saturating_add(secs));
        Ok(ExchangedToken {
            token: token.into(),
            expires_at,
        })
    }
}

/// A digest of the subject token and the target, each length-prefixed.
fn cache_key(subject_token: &str, target: &ExchangeTarget) -> [u8; 32] {
    let mut digest = Sha256::new();
    for part in [
        Some(subject_token),
        Some(target.resource.as_str()),
        target.audience.as_deref(),
        target.scope.as_deref(),
    ] {
        match part {
            Some(text) => {
                digest.update([1]);
                digest.update((text.len() as u64).to_be_bytes());
                digest.update(text.as_bytes());
            }
            None => digest.update([0]),
        }
    }
    digest.finalize().into()
}

impl TokenExchangeBuilder {
    /// The time limit of one exchange (5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long before its expiry an exchanged token is replaced (30 s).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// At most how many exchanged tokens are cached (10 000; 0: none).
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The authorization server's issuer identifiers: a `private_key_jwt`
    /// assertion names them as audiences beside the endpoint.
    pub fn issuer<I, T>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.issuers.extend(issuers.into_iter().map(Into::into));
        self
    }

    /// The HTTP client to ask with (proxies, extra root certificates).
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Reads the time (Unix seconds) from `clock` (tests).
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The token exchange client.
    ///
    /// # Errors
    ///
    /// The URL is not `http(s)://`, the client id or a secret is empty, or
    /// the HTTP client cannot be built.
    pub fn build(self) -> Result<TokenExchange, ConfigError> {
        let endpoint = Endpoint::new(
            Names {
                url: "MCP_TOKEN_EXCHANGE_URL",
                client_id: "MCP_TOKEN_EXCHANGE_CLIENT_ID",
                client_secret: "MCP_TOKEN_EXCHANGE_CLIENT_SECRET",
            },
            self.url,
            self.client_id,
            self.auth,
            self.client,
            self.issuers,
        )?;
        Ok(TokenExchange {
            inner: Arc::new(Inner {
                endpoint,
                timeout: self.timeout,
                margin: self.margin.as_secs(),
                capacity: self.capacity,
                cache: Mutex::default(),
                clock: self
                    .clock
                    .unwrap_or_else(|| Arc::new(super::oauth::system_now)),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    //! Answer shapes a real authorization server rarely gives (errors,
    //! missing fields, no expiry), from a scripted endpoint on 127.0.0.1;
    //! the exchange against a real one is in `tests/token_exchange.rs`.
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// An endpoint answering `status` and `body` to every request; how
    /// many it received; the last form it was sent.
    struct Endpoint {
        url: String,
        asked: Arc<AtomicU64>,
        last: Arc<Mutex<String>>,
    }

    async fn endpoint(status: u16, body: Value) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let asked = Arc::new(AtomicU64::new(0));
        let last = Arc::new(Mutex::new(String::new()));
        let (count, form) = (Arc::clone(&asked), Arc::clone(&last));
        let route = axum::routing::post(move |request: String| {
            count.fetch_add(1, Ordering::SeqCst);
            *form.lock().unwrap() = request;
            let body = body.clone();
            async move {
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/json")],
                    body.to_string(),
                )
            }
        });
        let router = axum::Router::new().route("/token", route);
        tokio::spawn(async move { axum::serve(listener, router).await });
        Endpoint { url, asked, last }
    }

    fn exchange(url: &str, now: Arc<AtomicU64>) -> TokenExchange {
        TokenExchange::builder(url, "gateway", ClientAuth::SecretPost("s3cret".into()))
            .clock(move || now.load(Ordering::SeqCst))
            .cache_capacity(2)
            .build()
            .unwrap()
    }

    fn issued(expires_in: Option<u64>) -> Value {
        let mut body = serde_json::json!({
            "access_token": "upstream-token",
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
        });
        if let Some(secs) = expires_in {
            body["expires_in"] = secs.into();
        }
        body
    }

    #[tokio::test]
    async fn the_form_names_the_grant_the_subject_and_the_target() {
        let server = endpoint(200, issued(Some(300))).await;
        let exchange = exchange(&server.url, Arc::new(AtomicU64::new(1000)));
        let target = ExchangeTarget::resource("https://up.example/mcp")
            .audience("up")
            .scope("tools:call");
        let token = exchange.exchange("caller token", &target).await.unwrap();
        assert_eq!(token.as_str(), "upstream-token");
        assert_eq!(token.expires_at(), Some(1300));
        assert!(!format!("{token:?}").contains("upstream-token"));
        let form = server.last.lock().unwrap().clone();
        for part in [
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
            "subject_token=caller%20token",
            "subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token",
            "resource=https%3A%2F%2Fup.example%2Fmcp",
            "audience=up",
            "scope=tools%3Acall",
            "client_id=gateway",
            "client_secret=s3cret",
        ] {
            assert!(form.split('&').any(|p| p == part), "{part} not in {form}");
        }
    }

    #[tokio::test]
    async fn tokens_are_reused_until_the_margin_before_expiry_per_caller_and_target() {
        let server = endpoint(200, issued(Some(300))).await;
        let now = Arc::new(AtomicU64::new(1000));
        let exchange = exchange(&server.url, Arc::clone(&now));
        let up = ExchangeTarget::resource("https://up.example/mcp");
        exchange.exchange("alice", &up).await.unwrap();
        exchange.exchange("alice", &up).await.unwrap();
        assert_eq!(server.asked.load(Ordering::SeqCst), 1);
        // Another caller, another target: asked again.
        exchange.exchange("bob", &up).await.unwrap();
        exchange
            .exchange(
                "alice",
                &ExchangeTarget::resource("https://other.example/mcp"),
            )
            .await
            .unwrap();
        assert_eq!(server.asked.load(Ordering::SeqCst), 3);
        // Bounded: two entries at most.
        assert_eq!(exchange.cached_tokens(), 2);
        // 30 s before expiry (1300): renewed.
        now.store(1270, Ordering::SeqCst);
        exchange.exchange("bob", &up).await.unwrap();
        assert_eq!(server.asked.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_token_without_expiry_is_used_once() {
        let server = endpoint(200, issued(None)).await;
        let exchange = exchange(&server.url, Arc::new(AtomicU64::new(1000)));
        let up = ExchangeTarget::resource("https://up.example/mcp");
        exchange.exchange("alice", &up).await.unwrap();
        exchange.exchange("alice", &up).await.unwrap();
        assert_eq!(server.asked.load(Ordering::SeqCst), 2);
        assert_eq!(exchange.cached_tokens(), 0);
    }

    #[tokio::test]
    async fn refusals_and_failures_are_typed() {
        let up = ExchangeTarget::resource("https://up.example/mcp");
        let now = Arc::new(AtomicU64::new(1000));
        let cases = [
            (
                400,
                serde_json::json!({"error": "invalid_grant"}),
                StatusCode::UNAUTHORIZED,
            ),
            (
                400,
                serde_json::json!({"error": "invalid_target"}),
                StatusCode::FORBIDDEN,
            ),
            (
                401,
                serde_json::json!({"error": "invalid_client"}),
                StatusCode::BAD_GATEWAY,
            ),
            (
                503,
                serde_json::json!({"error": "temporarily_unavailable"}),
                StatusCode::BAD_GATEWAY,
            ),
            (
                200,
                serde_json::json!({"token_type": "Bearer"}),
                StatusCode::BAD_GATEWAY,
            ),
            (
                200,
                serde_json::json!({"access_token": "t", "token_type": "DPoP"}),
                StatusCode::BAD_GATEWAY,
            ),
            (
                200,
                serde_json::json!({"access_token": "t", "token_type": "Bearer",
                                   "issued_token_type": "urn:ietf:params:oauth:token-type:id_token"}),
                StatusCode::BAD_GATEWAY,
            ),
            (
                200,
                serde_json::json!(["not", "an", "object"]),
                StatusCode::BAD_GATEWAY,
            ),
        ];
        for (status, body, expected) in cases {
            let server = endpoint(status, body.clone()).await;
            let error = exchange(&server.url, Arc::clone(&now))
                .exchange("alice", &up)
                .await
                .unwrap_err();
            assert_eq!(error.status(), expected, "{status} {body}: {error}");
            assert_eq!(error.is_unreachable(), status == 503, "{status} {body}");
        }
        // Nobody listening.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/token", listener.local_addr().unwrap())
        };
        let error = exchange(&closed, now)
            .exchange("alice", &up)
            .await
            .unwrap_err();
        assert!(error.is_unreachable(), "{error}");
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn settings_errors_name_the_exchange_settings() {
        let error =
            TokenExchange::builder("ftp://x", "gateway", ClientAuth::SecretBasic("s".into()))
                .build()
                .unwrap_err();
        assert_eq!(error.setting(), "MCP_TOKEN_EXCHANGE_URL");
        let error = TokenExchange::builder(
            "https://as.example/token",
            "",
            ClientAuth::SecretBasic("s".into()),
        )
        .build()
        .unwrap_err();
        assert_eq!(error.setting(), "MCP_TOKEN_EXCHANGE_CLIENT_ID");
        let error = TokenExchange::builder(
            "https://as.example/token",
            "g",
            ClientAuth::SecretBasic(String::new()),
        )
        .build()
        .unwrap_err();
        assert_eq!(error.setting(), "MCP_TOKEN_EXCHANGE_CLIENT_SECRET");
    }
}
