//! `AuthLayer` and its service, an [`AsyncGuard`].

use std::future::Future;
use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Extensions, Method, Request, Uri};
use tower_layer::Layer;

use super::api_key::ApiKeys;
use super::challenge::Challenge;
use super::jwt::{Failure, JwtAuth};
use crate::audit;
use crate::client_ip::ClientIp;
use crate::guard::{AsyncCheck, AsyncGuard, AsyncResponseFuture, NowOrLater};
use crate::principal::Principal;
use crate::reject::{DefaultResponder, Reason, Rejection, Respond};

/// The header API keys are read from by default.
pub const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");

/// Query parameters that carry credentials (refused unless enabled).
const QUERY_TOKEN_PARAMS: [&str; 2] = ["access_token", "token"];
const QUERY_KEY_PARAMS: [&str; 2] = ["api_key", "apikey"];

#[derive(Clone)]
struct Config {
    jwt: Option<JwtAuth>,
    api_keys: Option<ApiKeys>,
    anonymous: bool,
    api_key_header: HeaderName,
    allow_query: bool,
    realm: Option<String>,
    resource_metadata: Option<String>,
}

/// Turns a credential into a [`Principal`] in the request extensions, or
/// refuses the request.
///
/// * `Authorization: Bearer <token>`: a JWT when a [`JwtAuth`] is set (a
///   value that is not shaped like a JWT is tried as an API key when API
///   keys are set, for clients that can only send bearer tokens);
/// * `X-API-Key: <key>` when [`ApiKeys`] are set;
/// * credentials in the query string (`access_token`, `api_key`, ...) are
///   refused, unless [`allow_query_credentials`](Self::allow_query_credentials)
///   is on, and even then only on WebSocket upgrades, which browsers cannot
///   send headers with.
///
/// Refusals: no credential → 401 `unauthenticated`; a bad one → 401
/// `invalid_credentials`; an expired token → 401 `token_expired`; keys too
/// stale to trust → 503 `auth_unavailable`. Every 401 carries
/// `WWW-Authenticate: Bearer` with `error` (RFC 6750) and, when set,
/// `resource_metadata` (RFC 9728), and every refusal is one audit event on
/// `tower_warden::audit` with the reason, client address and subject or key
/// id when known — never the credential.
///
/// Cloning is cheap; clones share keys and the token cache.
#[must_use]
pub struct AuthLayer<R = DefaultResponder> {
    config: Arc<Config>,
    responder: R,
}

impl<R: Clone> Clone for AuthLayer<R> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            responder: self.responder.clone(),
        }
    }
}

impl<R> std::fmt::Debug for AuthLayer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("jwt", &self.config.jwt)
            .field("api_keys", &self.config.api_keys)
            .field("anonymous", &self.config.anonymous)
            .field("api_key_header", &self.config.api_key_header)
            .field("allow_query", &self.config.allow_query)
            .field("resource_metadata", &self.config.resource_metadata)
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    fn with(jwt: Option<JwtAuth>, api_keys: Option<ApiKeys>, anonymous: bool) -> Self {
        Self {
            config: Arc::new(Config {
                jwt,
                api_keys,
                anonymous,
                api_key_header: X_API_KEY,
                allow_query: false,
                realm: None,
                resource_metadata: None,
            }),
            responder: DefaultResponder,
        }
    }

    /// Accepts JSON Web Tokens verified by `jwt`.
    pub fn jwt(jwt: JwtAuth) -> Self {
        Self::with(Some(jwt), None, false)
    }

    /// Accepts the API keys in `keys`.
    pub fn api_keys(keys: ApiKeys) -> Self {
        Self::with(None, Some(keys), false)
    }

    /// Accepts both JWTs and API keys.
    pub fn jwt_or_api_key(jwt: JwtAuth, keys: ApiKeys) -> Self {
        Self::with(Some(jwt), Some(keys), false)
    }

    /// Authentication switched off: every request gets
    /// [`Principal::anonymous`] (every scope), unless an outer layer already
    /// put a [`Principal`] in its extensions. For development only.
    pub fn anonymous() -> Self {
        Self::with(None, None, true)
    }
}

impl<R> AuthLayer<R> {
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Reads API keys from `header` instead of `X-API-Key`.
    pub fn api_key_header(mut self, header: HeaderName) -> Self {
        self.config_mut().api_key_header = header;
        self
    }

    /// Accepts `access_token`/`api_key` query parameters on WebSocket
    /// upgrades (`MCP_WS_ALLOW_QUERY_AUTH`). Query strings end up in proxy
    /// and server logs; prefer headers.
    pub fn allow_query_credentials(mut self, allow: bool) -> Self {
        self.config_mut().allow_query = allow;
        self
    }

    /// The `realm` of the challenges.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.config_mut().realm = Some(realm.into());
        self
    }

    /// The URL of this server's RFC 9728 protected-resource metadata, sent as
    /// `resource_metadata` in every 401 challenge so that MCP clients can
    /// discover the authorization server.
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.config_mut().resource_metadata = Some(url.into());
        self
    }

    /// Answers refusals with `responder` instead of problem JSON / gRPC status.
    pub fn responder<R2: Respond>(self, responder: R2) -> AuthLayer<R2> {
        AuthLayer {
            config: self.config,
            responder,
        }
    }
}

impl<R> AuthLayer<R> {
    /// Authenticates `request` with the credentials configured now, by the
    /// same code as the service: the current API keys and JWT keys (after
    /// a reload), the token cache, the same refusals, each one audited.
    ///
    /// For checking a credential again after the request that presented it
    /// was admitted, as a long-lived connection (a WebSocket session) must
    /// when keys are replaced: keep [`credential_head`](Self::credential_head)
    /// of the request and authenticate it again whenever needed.
    ///
    /// Resolves to the [`Principal`], or to the [`Rejection`] the layer
    /// would answer with (its [`reason`](Rejection::reason) is
    /// [`Reason::AuthUnavailable`] when the keys cannot be fetched right
    /// now, a temporary condition). The future does not borrow `request`.
    pub fn authenticate<B>(
        &self,
        request: &Request<B>,
    ) -> impl Future<Output = Result<Principal, Rejection>> + Send + 'static {
        let done = match self.config.authenticate(request) {
            NowOrLater::Now(result) => {
                Ok(result.map_err(|refusal| self.config.rejection(refusal, request.extensions())))
            }
            // Keys are being fetched: the audit trail later needs only
            // the client address.
            NowOrLater::Later(pending) => Err((
                pending,
                Arc::clone(&self.config),
                client_ip_only(request.extensions()),
            )),
        };
        async move {
            match done {
                Ok(result) => result,
                Err((pending, config, extensions)) => pending
                    .await
                    .map_err(|failure| config.rejection(failure, &extensions)),
            }
        }
    }

    /// What [`authenticate`](Self::authenticate) reads of `request`, and
    /// nothing more: the method, the URI (without its query unless
    /// [query credentials](Self::allow_query_credentials) are allowed), the
    /// `Authorization` and API-key headers, the upgrade headers that decide
    /// whether a query credential counts, and the client address (for the
    /// audit trail). Keep it to authenticate the same credential again
    /// later; it holds the credential, so never log it.
    ///
    /// `None` when authentication is switched off
    /// ([`anonymous`](AuthLayer::anonymous)): there is no credential to
    /// check again.
    #[must_use]
    pub fn credential_head<B>(&self, request: &Request<B>) -> Option<Request<()>> {
        if self.config.anonymous {
            return None;
        }
        let mut head = Request::new(());
        *head.method_mut() = request.method().clone();
        *head.version_mut() = request.version();
        *head.uri_mut() = if self.config.allow_query {
            request.uri().clone()
        } else {
            let mut parts = request.uri().clone().into_parts();
            parts.path_and_query = request.uri().path().parse().ok();
            Uri::from_parts(parts).unwrap_or_default()
        };
        for name in [
            &AUTHORIZATION,
            &self.config.api_key_header,
            &http::header::UPGRADE,
            &http::header::SEC_WEBSOCKET_VERSION,
        ] {
            // Every value: a repeated credential header stays refused.
            for value in request.headers().get_all(name) {
                head.headers_mut().append(name.clone(), value.clone());
            }
        }
        *head.extensions_mut() = client_ip_only(request.extensions());
        Some(head)
    }
}

/// Extensions holding only the client address of `extensions`, if known.
fn client_ip_only(extensions: &Extensions) -> Extensions {
    let mut only = Extensions::new();
    if let Some(ip) = ClientIp::of(extensions) {
        only.insert(ClientIp(ip));
    }
    only
}

impl<S, R: Clone> Layer<S> for AuthLayer<R> {
    type Service = Auth<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        AsyncGuard::new(inner, self.clone())
    }
}

/// The service of [`AuthLayer`]: the inner service behind authentication.
/// Clones share keys and the token cache.
pub type Auth<S, R = DefaultResponder> = AsyncGuard<S, AuthLayer<R>>;

/// The response future of [`Auth`] (boxed only while signing keys are
/// fetched).
pub type ResponseFuture<S, B, R = DefaultResponder> = AsyncResponseFuture<S, B, AuthLayer<R>>;

impl Auth<(), DefaultResponder> {
    /// The layer that accepts JSON Web Tokens verified by `jwt`; see
    /// [`AuthLayer::jwt`], and [`AuthLayer`] for API keys.
    pub fn layer(jwt: JwtAuth) -> AuthLayer {
        AuthLayer::jwt(jwt)
    }
}

impl<R: Respond> AsyncCheck for AuthLayer<R> {
    type Responder = R;
    /// The principal, or why not.
    type Outcome = Result<Principal, Failure>;
    type Memo = ();
    type Admitted = ();

    #[inline]
    fn decide<B>(&self, request: &Request<B>) -> Option<((), NowOrLater<Self::Outcome>)> {
        Some(((), self.config.authenticate(request)))
    }

    fn apply<B>(
        &self,
        (): (),
        outcome: Self::Outcome,
        request: &mut Request<B>,
    ) -> Result<(), Rejection> {
        match outcome {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Ok(())
            }
            Err(refusal) => Err(self.config.rejection(refusal, request.extensions())),
        }
    }

    fn responder(&self) -> &R {
        &self.responder
    }
}

fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

fn is_websocket_upgrade<B>(request: &Request<B>) -> bool {
    let upgrade = request
        .headers()
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    // HTTP/1.1 upgrade, or an HTTP/2 extended CONNECT (RFC 8441).
    (request.method() == Method::GET && upgrade)
        || (request.method() == Method::CONNECT
            && request.headers().contains_key("sec-websocket-version"))
}

/// One header value, without the spaces around it; a refusal when it is
/// repeated or not text.
fn single<'a>(
    headers: &'a http::HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a [u8]>, Failure> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Failure::new(
            Reason::InvalidCredentials,
            "more than one credential header",
            Some("invalid_request"),
        ));
    }
    Ok(Some(first.as_bytes().trim_ascii()))
}

/// `bytes` as text, or a refusal. `from_utf8` rather than
/// `HeaderValue::to_str`: several times faster on a long token, and a
/// non-ASCII credential fails verification anyway.
fn text(bytes: &[u8]) -> Result<&str, Failure> {
    std::str::from_utf8(bytes).map_err(|_| {
        Failure::new(
            Reason::InvalidCredentials,
            "the credential header is not valid text",
            Some("invalid_request"),
        )
    })
}

/// The token of `Bearer <token>` (the scheme in any letter case, then one
/// or more spaces).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii_start())
}

fn query_param<'a>(query: &'a str, names: &[&str]) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        names.contains(&name).then_some(value)
    })
}

impl Config {
    fn authenticate<B>(&self, request: &Request<B>) -> NowOrLater<Result<Principal, Failure>> {
        if self.anonymous {
            let principal = request.extensions().get::<Principal>().cloned();
            return NowOrLater::Now(Ok(principal.unwrap_or_else(Principal::anonymous)));
        }
        let headers = request.headers();
        let bearer = match single(headers, &AUTHORIZATION) {
            Ok(v) => v,
            Err(refusal) => return NowOrLater::Now(Err(refusal)),
        };
        if let Some(value) = bearer {
            let Some(token) = bearer_token(value) else {
                return NowOrLater::Now(Err(Failure::new(
                    Reason::InvalidCredentials,
                    "only Bearer credentials are accepted in Authorization",
                    Some("invalid_request"),
                )));
            };
            return match text(token) {
                Ok(token) => self.bearer(token),
                Err(refusal) => NowOrLater::Now(Err(refusal)),
            };
        }
        let api_key =
            match single(headers, &self.api_key_header).and_then(|v| v.map(text).transpose()) {
                Ok(v) => v,
                Err(refusal) => return NowOrLater::Now(Err(refusal)),
            };
        if let Some(key) = api_key {
            return NowOrLater::Now(self.api_key(key));
        }
        if let Some(query) = request.uri().query() {
            let token = query_param(query, &QUERY_TOKEN_PARAMS);
            let key = query_param(query, &QUERY_KEY_PARAMS);
            if token.is_some() || key.is_some() {
                if !(self.allow_query && is_websocket_upgrade(request)) {
                    return NowOrLater::Now(Err(Failure::new(
                        Reason::Unauthenticated,
                        "credentials in the query string are not accepted; send a header",
                        Some("invalid_request"),
                    )));
                }
                if let Some(token) = token {
                    return self.bearer(token);
                }
                if let Some(key) = key {
                    return NowOrLater::Now(self.api_key(key));
                }
            }
        }
        NowOrLater::Now(Err(Failure::new(
            Reason::Unauthenticated,
            Reason::Unauthenticated.default_detail(),
            None,
        )))
    }

    fn bearer(&self, token: &str) -> NowOrLater<Result<Principal, Failure>> {
        if token.is_empty() {
            return NowOrLater::Now(Err(Failure::new(
                Reason::InvalidCredentials,
                "the bearer token is empty",
                Some("invalid_request"),
            )));
        }
        match (&self.jwt, &self.api_keys) {
            (Some(jwt), None) => jwt.verify(token),
            (Some(jwt), Some(_)) if looks_like_jwt(token) => jwt.verify(token),
            (_, Some(_)) => NowOrLater::Now(self.api_key(token)),
            (None, None) => NowOrLater::Now(Err(Failure::new(
                Reason::InvalidCredentials,
                "bearer tokens are not accepted",
                Some("invalid_token"),
            ))),
        }
    }

    fn api_key(&self, key: &str) -> Result<Principal, Failure> {
        match &self.api_keys {
            Some(keys) => keys.verify(key).ok_or_else(|| {
                Failure::new(
                    Reason::InvalidCredentials,
                    "the API key is not valid",
                    Some("invalid_token"),
                )
            }),
            None => Err(Failure::new(
                Reason::InvalidCredentials,
                "API keys are not accepted",
                Some("invalid_request"),
            )),
        }
    }

    fn rejection(&self, refusal: Failure, extensions: &Extensions) -> Rejection {
        audit::denied(
            refusal.reason,
            extensions,
            refusal.subject.as_deref(),
            refusal.kid.as_deref(),
            refusal.detail,
        );
        let mut rejection = Rejection::new(refusal.reason).with_detail(refusal.detail);
        if refusal.reason == Reason::AuthUnavailable {
            return rejection.with_header(RETRY_AFTER, HeaderValue::from_static("10"));
        }
        let challenge = Challenge {
            realm: self.realm.as_deref(),
            error: refusal.oauth_error,
            description: refusal.oauth_error.map(|_| refusal.detail),
            scope: None,
            resource_metadata: self.resource_metadata.as_deref(),
        };
        rejection = rejection.with_header(WWW_AUTHENTICATE, challenge.to_header());
        rejection
    }
}
