//! `AuthLayer` and its service, an [`AsyncGuard`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Extensions, Method, Request, Uri};
use sha2::Digest as _;
use tower_layer::Layer;

use super::api_key::ApiKeys;
use super::dpop::{
    self, DEFAULT_DPOP_FUTURE_SKEW, DEFAULT_DPOP_MAX_AGE, DEFAULT_DPOP_REPLAY_CAPACITY, DPOP,
    Origin, Proof, ReplayCache, Target, Window,
};
use super::jwt::{Failure, JwtAuth};
use super::verified::Verified;
use crate::ConfigError;
use crate::audit;
use crate::challenge::Challenge;
use crate::client_ip::ClientIp;
use crate::config::DpopMode;
use crate::guard::{AsyncCheck, AsyncGuard, AsyncResponseFuture, NowOrLater};
use crate::principal::{AuthMethod, Principal};
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
    /// Opaque tokens (not JWTs, not API keys) asked of the authorization
    /// server.
    #[cfg(feature = "introspection")]
    introspection: Option<super::introspect::Introspection>,
    anonymous: bool,
    api_key_header: HeaderName,
    allow_query: bool,
    realm: Option<String>,
    resource_metadata: Option<String>,
    dpop: DpopSettings,
    /// Leave the verified token in the extensions ([`AccessToken`]).
    keep_token: bool,
}

/// How DPoP proofs are checked.
#[derive(Clone)]
struct DpopSettings {
    mode: DpopMode,
    window: Window,
    /// Shared by clones of the layer.
    replay: Arc<ReplayCache>,
    /// Empty: the request's own origin.
    origins: Vec<Origin>,
}

/// The caller's verified access token, left in the request extensions by
/// [`AuthLayer`] when
/// [`keep_access_token`](AuthLayer::keep_access_token) is on, for a
/// service that exchanges it. It is a credential: its `Debug` shows
/// nothing of it; never log [`as_str`](Self::as_str).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// The token.
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        Self(token.into())
    }

    /// The token's text (a credential).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

/// The key a request proved it holds with a DPoP proof, left in its
/// extensions on admission so that [`AuthLayer::credential_head`] can
/// check the same token again later without replaying the proof.
#[derive(Clone, Copy, Debug)]
struct ProvenKey([u8; 32]);

/// What an admitted request showed: who, and the DPoP key it proved (the
/// outcome of [`AuthLayer`] as an [`AsyncCheck`]; not part of the API).
#[derive(Clone, Debug)]
pub struct Admitted {
    principal: Principal,
    proven: Option<[u8; 32]>,
}

/// How a request holds the key its token may be bound to.
#[derive(Clone, Copy, Debug)]
enum Possession {
    /// No DPoP proof.
    None,
    /// A DPoP proof, verified but not yet recorded against replays.
    Proof(Proof, u64),
    /// A DPoP proof checked when the request was admitted (a credential
    /// head checked again).
    Proven([u8; 32]),
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
/// * `Authorization: DPoP <token>` with a `DPoP` proof header (RFC 9449)
///   when [DPoP](Self::dpop) is allowed (the default) or required: the
///   proof is checked (`typ`, an asymmetric `alg`, its public `jwk`, `htm`,
///   `htu`, `iat`, `ath`, a `jti` not seen before) and the token must be
///   bound to the proof's key (`cnf.jkt`, RFC 7638 thumbprint).
///
/// Bound tokens are never bearer tokens: a token with `cnf.jkt` is refused
/// without its proof, and a token with `cnf.x5t#S256` (RFC 8705) is
/// accepted only with the client certificate it names (the
/// [`ClientCertInfo`](crate::client_cert::ClientCertInfo) that
/// `ClientCertLayer::rfc9440` leaves in the request), whatever the mode.
/// Cached tokens keep their binding: it is checked on every request.
///
/// Refusals: no credential → 401 `unauthenticated`; a bad one → 401
/// `invalid_credentials`; an expired token → 401 `token_expired`; keys too
/// stale to trust → 503 `auth_unavailable`. Every 401 carries
/// `WWW-Authenticate: Bearer` with `error` (RFC 6750) and, when set,
/// `resource_metadata` (RFC 9728) — and, with DPoP on, a second challenge
/// `WWW-Authenticate: DPoP algs="..."` carrying the `error`
/// (`invalid_dpop_proof`) when the proof was refused (RFC 9449 §7.1) —,
/// and every refusal is one audit event on
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
            .field("dpop", &self.config.dpop.mode)
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    fn with(jwt: Option<JwtAuth>, api_keys: Option<ApiKeys>, anonymous: bool) -> Self {
        Self {
            config: Arc::new(Config {
                jwt,
                api_keys,
                #[cfg(feature = "introspection")]
                introspection: None,
                anonymous,
                api_key_header: X_API_KEY,
                allow_query: false,
                realm: None,
                resource_metadata: None,
                dpop: DpopSettings {
                    mode: DpopMode::Allowed,
                    window: Window {
                        max_age: DEFAULT_DPOP_MAX_AGE.as_secs(),
                        future_skew: DEFAULT_DPOP_FUTURE_SKEW.as_secs(),
                    },
                    replay: Arc::new(ReplayCache::new(DEFAULT_DPOP_REPLAY_CAPACITY)),
                    origins: Vec::new(),
                },
                keep_token: false,
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

    /// Accepts opaque access tokens, checked by `introspection` (RFC 7662),
    /// and nothing else: add JWTs with [`AuthLayer::jwt`] and
    /// [`introspection`](AuthLayer::introspection) instead to take both.
    #[cfg(feature = "introspection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "introspection")))]
    pub fn introspection_only(introspection: super::introspect::Introspection) -> Self {
        Self::with(None, None, false).introspection(introspection)
    }

    /// Authentication switched off: every request gets
    /// [`Principal::anonymous`] (every scope), unless an outer layer already
    /// put a [`Principal`] in its extensions. For development only.
    pub fn anonymous() -> Self {
        Self::with(None, None, true)
    }
}

impl<R> AuthLayer<R> {
    /// Also accepts opaque access tokens: a bearer token that does not look
    /// like a JWT and is not a valid API key is asked of `introspection`'s
    /// endpoint (RFC 7662).
    #[cfg(feature = "introspection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "introspection")))]
    pub fn introspection(mut self, introspection: super::introspect::Introspection) -> Self {
        self.config_mut().introspection = Some(introspection);
        self
    }

    /// Leaves the verified access token of each request admitted by one (a
    /// JWT or an introspected token; never an API key) in its extensions as
    /// an [`AccessToken`], for an inner service that exchanges it for an
    /// upstream's token (RFC 8693). Off by default: the inner service sees
    /// no more of the credential than it needs.
    pub fn keep_access_token(mut self, keep: bool) -> Self {
        self.config_mut().keep_token = keep;
        self
    }

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

    /// Whether DPoP-bound tokens (RFC 9449) are accepted
    /// ([`DpopMode::Allowed`], the default), required, or refused
    /// (`MCP_DPOP`). In every mode a token bound to a DPoP key is refused
    /// when presented as a plain bearer token. Needs JWT authentication;
    /// without it there is no DPoP.
    pub fn dpop(mut self, mode: DpopMode) -> Self {
        self.config_mut().dpop.mode = mode;
        self
    }

    /// How old a DPoP proof's `iat` may be (60 s by default,
    /// `MCP_DPOP_MAX_AGE_SECONDS`), and how far in the future (5 s). Each
    /// proof's `jti` is remembered for as long as the proof is acceptable.
    pub fn dpop_iat_window(mut self, max_age: Duration, future_skew: Duration) -> Self {
        self.config_mut().dpop.window = Window {
            max_age: max_age.as_secs(),
            future_skew: future_skew.as_secs(),
        };
        self
    }

    /// How many recent DPoP proofs are remembered to refuse replays
    /// (100 000 by default; at least 16). When that many proofs are still
    /// within their `iat` window a new proof is refused with 503
    /// `auth_unavailable` (and `Retry-After`) rather than a remembered
    /// one forgotten, which would let it be replayed.
    pub fn dpop_replay_capacity(mut self, capacity: usize) -> Self {
        self.config_mut().dpop.replay = Arc::new(ReplayCache::new(capacity));
        self
    }

    /// The origins (`https://mcp.example.com`, a port when not the
    /// default) that clients reach this server at: a DPoP proof's `htu`
    /// must name one of them and the request's path. Without any, the
    /// request's own origin counts: its absolute URI (HTTP/2), else its
    /// `Host` header with either scheme. Set it behind a proxy that
    /// rewrites `Host`.
    ///
    /// # Errors
    ///
    /// When an origin is not an absolute `http` or `https` URL.
    pub fn try_dpop_origins<I, T>(mut self, origins: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let origins = origins
            .into_iter()
            .map(|o| Origin::parse("dpop origin", o.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        self.config_mut().dpop.origins = origins;
        Ok(self)
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
            NowOrLater::Now(result) => Ok(result
                .map(|admitted| admitted.principal)
                .map_err(|refusal| self.config.rejection(refusal, request.extensions()))),
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
                    .map(|admitted| admitted.principal)
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
    /// A DPoP proof is not kept (checked again it would be a replay):
    /// when this layer admitted `request` with a proof, the head remembers
    /// the proven key instead, and the token is checked again against it.
    /// The client certificate the request came with is kept too, for
    /// certificate-bound tokens.
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
        if let Some(proven) = request.extensions().get::<ProvenKey>() {
            head.extensions_mut().insert(*proven);
        }
        #[cfg(feature = "client-cert")]
        if let Some(cert) = request
            .extensions()
            .get::<crate::client_cert::ClientCertInfo>()
        {
            head.extensions_mut().insert(cert.clone());
        }
        Some(head)
    }
}

impl Admitted {
    /// A principal admitted without a DPoP proof.
    fn unbound(principal: Principal) -> Self {
        Self {
            principal,
            proven: None,
        }
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
    const LAYER: &'static str = "auth";

    type Responder = R;
    /// The principal (and the DPoP key it proved), or why not.
    type Outcome = Result<Admitted, Failure>;
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
            Ok(admitted) => {
                if let Some(jkt) = admitted.proven {
                    request.extensions_mut().insert(ProvenKey(jkt));
                }
                if self.config.keep_token
                    && matches!(
                        admitted.principal.method(),
                        AuthMethod::Jwt | AuthMethod::Introspected
                    )
                    && let Some(token) = self.config.presented_token(request)
                {
                    let token = AccessToken::new(token);
                    request.extensions_mut().insert(token);
                }
                crate::telemetry::subject(admitted.principal.subject());
                request.extensions_mut().insert(admitted.principal);
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

/// The token of `DPoP <token>` (the scheme in any letter case).
fn dpop_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(4)?;
    if !scheme.eq_ignore_ascii_case(b"dpop") || rest.first() != Some(&b' ') {
        return None;
    }
    Some(rest.trim_ascii_start())
}

/// The DER client certificate a trusted proxy passed on (RFC 9440).
fn client_cert(extensions: &Extensions) -> Option<&[u8]> {
    #[cfg(feature = "client-cert")]
    {
        extensions
            .get::<crate::client_cert::ClientCertInfo>()
            .and_then(crate::client_cert::ClientCertInfo::certificate_der)
    }
    #[cfg(not(feature = "client-cert"))]
    {
        let _ = extensions;
        None
    }
}

/// Where the client certificate of a request is, read only when a token
/// is bound to one (the admitted path of plain tokens never looks).
#[derive(Clone, Copy)]
enum CertOf<'a> {
    /// In the request's extensions.
    Request(&'a Extensions),
    /// Taken out of them already (for a verification that waits on keys).
    Der(Option<&'a [u8]>),
}

impl<'a> CertOf<'a> {
    fn der(self) -> Option<&'a [u8]> {
        match self {
            Self::Request(extensions) => client_cert(extensions),
            Self::Der(der) => der,
        }
    }
}

/// Checks what `verified` is bound to against what the request holds: the
/// DPoP key it proved, the client certificate it came with. Then records
/// a fresh proof against replays (only now: a proof for a refused token
/// takes no room).
fn bind(
    verified: Verified,
    possession: Possession,
    cert: CertOf<'_>,
    replay: &ReplayCache,
) -> Result<Admitted, Failure> {
    let subject = |failure: Failure| Failure {
        subject: Some(verified.principal.subject().to_owned()),
        ..failure
    };
    let proven = match possession {
        Possession::None => None,
        Possession::Proof(proof, _) => Some(proof.jkt),
        Possession::Proven(jkt) => Some(jkt),
    };
    match (verified.cnf.jkt, proven) {
        (Some(_), None) => {
            return Err(subject(Failure::new(
                Reason::InvalidCredentials,
                "the token is bound to a DPoP key: send it as Authorization: DPoP with a proof",
                Some("invalid_token"),
            )));
        }
        (None, Some(_)) => {
            return Err(subject(
                Failure::new(
                    Reason::InvalidCredentials,
                    "the token is not bound to a DPoP key (cnf.jkt)",
                    Some("invalid_token"),
                )
                .on_dpop(),
            ));
        }
        (Some(bound), Some(proven)) if bound != proven => {
            return Err(subject(Failure::proof(
                "the DPoP proof is signed by another key than the token is bound to (cnf.jkt)",
            )));
        }
        _ => {}
    }
    if let Some(x5t) = verified.cnf.x5t {
        let refusal = match cert.der() {
            None => Some("the token is bound to a client certificate, and none was presented"),
            Some(der) if <[u8; 32]>::from(sha2::Sha256::digest(der)) != x5t => {
                Some("the token is bound to another client certificate (cnf.x5t#S256)")
            }
            Some(_) => None,
        };
        if let Some(detail) = refusal {
            return Err(subject(Failure::new(
                Reason::InvalidCredentials,
                detail,
                Some("invalid_token"),
            )));
        }
    }
    if let Possession::Proof(proof, now) = possession
        && let Some(refusal) =
            dpop::replay_refusal(replay.record(proof.replay_key, proof.remember_until, now))
    {
        return Err(subject(refusal));
    }
    Ok(Admitted {
        principal: verified.principal,
        proven,
    })
}

/// [`bind`] once `verified` is known.
fn bind_when(
    verified: NowOrLater<Result<Verified, Failure>>,
    possession: Possession,
    extensions: &Extensions,
    replay: &Arc<ReplayCache>,
) -> NowOrLater<Result<Admitted, Failure>> {
    // A refusal of a request made with the DPoP scheme, whatever its
    // cause (an expired token, a missing certificate), is told on the
    // DPoP challenge (RFC 9449 §7.1).
    let scheme = move |failure: Failure| match possession {
        Possession::None => failure,
        Possession::Proof(..) | Possession::Proven(_) => failure.on_dpop(),
    };
    match verified {
        NowOrLater::Now(result) => NowOrLater::Now(
            result
                .and_then(|v| bind(v, possession, CertOf::Request(extensions), replay))
                .map_err(scheme),
        ),
        NowOrLater::Later(pending) => {
            let cert = client_cert(extensions).map(<[u8]>::to_vec);
            let replay = Arc::clone(replay);
            NowOrLater::Later(Box::pin(async move {
                pending
                    .await
                    .and_then(|v| bind(v, possession, CertOf::Der(cert.as_deref()), &replay))
                    .map_err(scheme)
            }))
        }
    }
}

fn query_param<'a>(query: &'a str, names: &[&str]) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        names.contains(&name).then_some(value)
    })
}

impl Config {
    /// The DPoP mode in force: off without JWT authentication.
    fn dpop_mode(&self) -> DpopMode {
        if self.jwt.is_some() {
            self.dpop.mode
        } else {
            DpopMode::Off
        }
    }

    /// The refusal of a credential other than a DPoP-bound token, when
    /// DPoP is required.
    fn dpop_required() -> Failure {
        Failure::new(
            Reason::InvalidCredentials,
            "only DPoP-bound tokens are accepted: send Authorization: DPoP with a proof",
            Some("invalid_token"),
        )
        .on_dpop()
    }

    /// The token `request` presented, as [`authenticate`](Self::authenticate)
    /// read it: `Authorization: Bearer` or `DPoP`, else the query string of
    /// a WebSocket upgrade when allowed.
    fn presented_token<'a, B>(&self, request: &'a Request<B>) -> Option<&'a str> {
        if let Ok(Some(value)) = single(request.headers(), &AUTHORIZATION) {
            let token = bearer_token(value).or_else(|| dpop_token(value))?;
            return text(token).ok();
        }
        if self.allow_query && is_websocket_upgrade(request) {
            return query_param(request.uri().query()?, &QUERY_TOKEN_PARAMS);
        }
        None
    }

    fn authenticate<B>(&self, request: &Request<B>) -> NowOrLater<Result<Admitted, Failure>> {
        if self.anonymous {
            let principal = request.extensions().get::<Principal>().cloned();
            return NowOrLater::Now(Ok(Admitted {
                principal: principal.unwrap_or_else(Principal::anonymous),
                proven: None,
            }));
        }
        let headers = request.headers();
        let bearer = match single(headers, &AUTHORIZATION) {
            Ok(v) => v,
            Err(refusal) => return NowOrLater::Now(Err(refusal)),
        };
        if let Some(value) = bearer {
            if let Some(token) = bearer_token(value) {
                return match text(token) {
                    Ok(token) => self.bearer(token, request),
                    Err(refusal) => NowOrLater::Now(Err(refusal)),
                };
            }
            if let Some(token) = dpop_token(value)
                && self.dpop_mode() != DpopMode::Off
            {
                return match text(token) {
                    Ok(token) => self.dpop(token, request),
                    Err(refusal) => NowOrLater::Now(Err(refusal)),
                };
            }
            return NowOrLater::Now(Err(Failure::new(
                Reason::InvalidCredentials,
                if self.dpop_mode() == DpopMode::Off {
                    "only Bearer credentials are accepted in Authorization"
                } else {
                    "only Bearer or DPoP credentials are accepted in Authorization"
                },
                Some("invalid_request"),
            )));
        }
        let api_key =
            match single(headers, &self.api_key_header).and_then(|v| v.map(text).transpose()) {
                Ok(v) => v,
                Err(refusal) => return NowOrLater::Now(Err(refusal)),
            };
        if let Some(key) = api_key {
            if self.dpop_mode() == DpopMode::Required {
                return NowOrLater::Now(Err(Self::dpop_required()));
            }
            return NowOrLater::Now(self.api_key(key).map(Admitted::unbound));
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
                    return self.bearer(token, request);
                }
                if let Some(key) = key {
                    if self.dpop_mode() == DpopMode::Required {
                        return NowOrLater::Now(Err(Self::dpop_required()));
                    }
                    return NowOrLater::Now(self.api_key(key).map(Admitted::unbound));
                }
            }
        }
        NowOrLater::Now(Err(Failure::new(
            Reason::Unauthenticated,
            Reason::Unauthenticated.default_detail(),
            None,
        )))
    }

    fn bearer<B>(
        &self,
        token: &str,
        request: &Request<B>,
    ) -> NowOrLater<Result<Admitted, Failure>> {
        if token.is_empty() {
            return NowOrLater::Now(Err(Failure::new(
                Reason::InvalidCredentials,
                "the bearer token is empty",
                Some("invalid_request"),
            )));
        }
        if self.dpop_mode() == DpopMode::Required {
            return NowOrLater::Now(Err(Self::dpop_required()));
        }
        let (extensions, replay) = (request.extensions(), &self.dpop.replay);
        #[cfg(feature = "introspection")]
        if let Some(introspection) = &self.introspection
            && !(self.jwt.is_some() && looks_like_jwt(token))
        {
            // An API key first (checked here, no round trip), then the
            // authorization server.
            if let Some(Ok(principal)) = self.api_keys.as_ref().map(|_| self.api_key(token)) {
                return NowOrLater::Now(Ok(Admitted::unbound(principal)));
            }
            return bind_when(
                introspection.verify(token),
                Possession::None,
                extensions,
                replay,
            );
        }
        match (&self.jwt, &self.api_keys) {
            (Some(jwt), None) => bind_when(jwt.verify(token), Possession::None, extensions, replay),
            (Some(jwt), Some(_)) if looks_like_jwt(token) => {
                bind_when(jwt.verify(token), Possession::None, extensions, replay)
            }
            (_, Some(_)) => NowOrLater::Now(self.api_key(token).map(Admitted::unbound)),
            (None, None) => NowOrLater::Now(Err(Failure::new(
                Reason::InvalidCredentials,
                "bearer tokens are not accepted",
                Some("invalid_token"),
            ))),
        }
    }

    /// `Authorization: DPoP <token>`: the proof in the `DPoP` header, then
    /// the token and its binding to the proof's key.
    fn dpop<B>(&self, token: &str, request: &Request<B>) -> NowOrLater<Result<Admitted, Failure>> {
        let Some(jwt) = &self.jwt else {
            return NowOrLater::Now(Err(Failure::new(
                Reason::InvalidCredentials,
                "DPoP-bound tokens are not accepted",
                Some("invalid_request"),
            )));
        };
        if token.is_empty() {
            return NowOrLater::Now(Err(Failure::new(
                Reason::InvalidCredentials,
                "the DPoP-bound token is empty",
                Some("invalid_request"),
            )
            .on_dpop()));
        }
        let mut proofs = request.headers().get_all(DPOP).iter();
        let possession = match (proofs.next(), proofs.next()) {
            (Some(_), Some(_)) => {
                return NowOrLater::Now(Err(Failure::proof(
                    "the request has more than one DPoP header",
                )));
            }
            (Some(proof), None) => {
                let Ok(proof) = std::str::from_utf8(proof.as_bytes().trim_ascii()) else {
                    return NowOrLater::Now(Err(Failure::proof("the DPoP proof is not text")));
                };
                let target = Target {
                    method: request.method(),
                    uri: request.uri(),
                    headers: request.headers(),
                    origins: &self.dpop.origins,
                };
                let now = jwt.now();
                match dpop::verify_proof(proof, token, &target, self.dpop.window, now) {
                    Ok(proof) => Possession::Proof(proof, now),
                    Err(refusal) => return NowOrLater::Now(Err(refusal)),
                }
            }
            (None, _) => match request.extensions().get::<ProvenKey>() {
                Some(&ProvenKey(jkt)) => Possession::Proven(jkt),
                None => {
                    return NowOrLater::Now(Err(Failure::proof(
                        "the request has no DPoP proof header",
                    )));
                }
            },
        };
        bind_when(
            jwt.verify(token),
            possession,
            request.extensions(),
            &self.dpop.replay,
        )
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
        let mode = self.dpop_mode();
        let bearer = mode != DpopMode::Required;
        let dpop = mode != DpopMode::Off;
        // The error goes on the challenge of the scheme it is about.
        let error_on_dpop = refusal.dpop || !bearer;
        let challenge = |on_dpop: bool| {
            let error = if on_dpop == error_on_dpop {
                refusal.oauth_error
            } else {
                None
            };
            Challenge {
                dpop: on_dpop,
                algs: on_dpop.then_some(dpop::PROOF_ALGS),
                realm: self.realm.as_deref(),
                error,
                description: error.map(|_| refusal.detail),
                scope: None,
                resource_metadata: self.resource_metadata.as_deref(),
            }
            .to_header()
        };
        if bearer {
            rejection = rejection.with_header(WWW_AUTHENTICATE, challenge(false));
        }
        if dpop {
            rejection = rejection.with_header(WWW_AUTHENTICATE, challenge(true));
        }
        rejection
    }
}
