//! [`WardenLayer`]: the whole perimeter, configured from a
//! [`WardenConfig`], as one layer.
//!
//! It protects an HTTP service — an MCP server, an axum router, a tonic
//! server — against everything the settings name: callers outside the IP
//! lists, spoofed forwarding headers, missing client certificates, floods,
//! oversized bodies, missing or forged credentials, DNS rebinding and
//! foreign browser origins, tool calls beyond the caller's scopes, and
//! callers over their quotas. Outermost first:
//!
//! | layer | on when |
//! |---|---|
//! | [`ClientIpLayer`] | always (the peer address; `X-Forwarded-For` only with `MCP_TRUST_X_FORWARDED` from `MCP_TRUSTED_PROXIES`) |
//! | [`IpFilterLayer`] | always; admits everyone while `MCP_ALLOWED_IPS` and `MCP_BLOCKED_IPS` are empty, and [reloadable](WardenLayer::ip_lists) |
//! | [`ClientCertLayer`] | `MCP_CLIENT_CERT_REQUIRED` |
//! | [`HostOriginLayer`] | always (`MCP_ALLOWED_HOSTS`, `MCP_ALLOWED_ORIGINS`) |
//! | [`RateLimitLayer`] per client address | `MCP_RATE_LIMIT_ENABLED` (default) |
//! | [`BodyLimitLayer`] | always (`MCP_HTTP_MAX_BODY_BYTES`) |
//! | [`AuthLayer`] | always (`MCP_AUTH_MODE`; `none` admits everyone as anonymous, development only) |
//! | [`McpPolicyLayer`] | `MCP_TOOL_SCOPES` or `MCP_TOOL_RATE_LIMITS` (otherwise bodies stream through unread) |
//! | [`RateLimitLayer`] per principal and tool | `MCP_TOOL_RATE_LIMITS` |
//! | [`RateLimitLayer`] per principal | `MCP_RATE_LIMIT_ENABLED` (default) |
//!
//! Cheap checks come first, so nothing unauthenticated is read beyond the
//! body cap, and floods from one address are cut before any signature is
//! checked. A layer that is off costs one branch. The synchronous checks
//! of the first four rows run in one guard ([`FrontChecks`]).
//!
//! Not included, because what they need is particular to your routes:
//! [`NamespaceLayer`](crate::namespace::NamespaceLayer) (which namespace a
//! request asks for), [`CircuitBreakerLayer`](crate::circuit_breaker::CircuitBreakerLayer)
//! (around the calls to a backend), MCP session binding, and timeouts. Add
//! them inside this layer, per route.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_warden::body_limit::LimitedBody;
//! use tower_warden::config::WardenConfig;
//! use tower_warden::mcp::RequestBody;
//! use tower_warden::stack::WardenLayer;
//!
//! // What the service receives: the body capped, and re-readable after the
//! // MCP policy looked at it.
//! type Body = RequestBody<LimitedBody<String>>;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = WardenConfig::from_vars([
//!     ("MCP_JWT_SECRET", "a-secret-of-at-least-thirty-two-bytes!"),
//!     ("MCP_ALLOWED_IPS", "10.0.0.0/8"),
//! ])?;
//! let service = ServiceBuilder::new()
//!     .layer(WardenLayer::from_config(&config)?)
//!     .service_fn(|_: Request<Body>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!     });
//!
//! // An allowed address without a token: 401, and the service is not called.
//! let mut request = Request::builder().uri("/mcp").header("host", "localhost").body(String::new())?;
//! request.extensions_mut().insert("10.1.2.3:5000".parse::<std::net::SocketAddr>()?);
//! let response = service.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//!
//! // Any other address: 403 before anything else is looked at.
//! let mut request = Request::builder().uri("/mcp").header("host", "localhost").body(String::new())?;
//! request.extensions_mut().insert("192.0.2.1:5000".parse::<std::net::SocketAddr>()?);
//! assert_eq!(service.oneshot(request).await?.status(), StatusCode::FORBIDDEN);
//! # Ok(())
//! # }
//! ```
//!
//! In axum, add it with `Router::layer` (or `route_layer`, so that an
//! unknown path stays 404), and serve with
//! `into_make_service_with_connect_info::<SocketAddr>()`; with feature
//! `axum` the peer address is read from `ConnectInfo`, otherwise copy it
//! into a `SocketAddr` extension. With tonic, `Server::builder().layer(..)`
//! and feature `tonic`.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::{Algorithm, ApiKeys, Auth, AuthLayer, JwtAuth};
use crate::body::ResponseBody;
use crate::body_limit::{BodyLimit, BodyLimitLayer};
use crate::client_cert::ClientCertLayer;
use crate::client_ip::ClientIpLayer;
use crate::config::{AuthMode, RateLimitStorage, WardenConfig};
use crate::error::ConfigError;
use crate::guard::{Check, Guard};
use crate::ip_filter::{IpFilterLayer, IpSet, IpSetHandle};
use crate::mcp::{HostOriginLayer, McpPolicy, McpPolicyLayer, ToolPolicy};
use crate::principal::{AuthMethod, Principal};
use crate::rate_limit::{Allowance, KeyBy, MemoryStore, Quota, RateLimit, RateLimitLayer, Store};
use crate::reject::{DefaultResponder, Rejection};
use crate::reload::ReloadHandle;
use crate::telemetry::admitted;

/// The whole perimeter of a [`WardenConfig`]; see the [module docs](self).
/// Clones share every layer's state (keys, quotas, IP lists).
#[derive(Clone)]
#[must_use]
pub struct WardenLayer {
    client_ip: ClientIpLayer,
    ip_filter: IpFilterLayer,
    client_cert: Option<ClientCertLayer>,
    per_ip: Option<RateLimitLayer>,
    body_limit: BodyLimitLayer,
    auth: AuthLayer,
    host_origin: HostOriginLayer,
    policy: McpPolicyLayer,
    per_tool: Option<RateLimitLayer>,
    per_principal: Option<RateLimitLayer>,
    parts: Arc<Parts>,
}

/// What the layers were built from, for the application.
struct Parts {
    jwt: Option<JwtAuth>,
    api_keys: Option<ApiKeys>,
    api_key_salt: Vec<u8>,
    ip_lists: IpSetHandle,
    warnings: Vec<String>,
    resource_url: String,
    metadata_url: String,
    tool_policy: Option<ToolPolicy>,
    rate_limit: RateLimitInfo,
}

/// Why [`WardenLayer::check_call`] (or
/// [`check_message`](WardenLayer::check_message)) refused to run a tool;
/// [`rejection`](Self::rejection) is the answer an HTTP request would get.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CallRefused {
    /// The caller's scopes do not cover the tool (`MCP_TOOL_SCOPES`): 403
    /// `insufficient_scope` with `WWW-Authenticate: Bearer
    /// error="insufficient_scope", error_description="…", scope="<missing
    /// scopes>", resource_metadata="…"`.
    Scope(crate::reject::Rejection),
    /// Over a rate limit: 429 `rate_limited` with `Retry-After` and the
    /// rate-limit headers.
    Limited {
        /// The refusing decision (`retry_after`: when to come back).
        decision: Allowance,
        /// The answer.
        rejection: crate::reject::Rejection,
    },
}

impl CallRefused {
    fn limited((decision, rejection): (Allowance, crate::reject::Rejection)) -> Self {
        Self::Limited {
            decision,
            rejection,
        }
    }

    /// The answer an HTTP request gets for this refusal (render it with
    /// [`problem_response`](crate::reject::problem_response)).
    #[must_use]
    pub fn rejection(&self) -> &crate::reject::Rejection {
        match self {
            Self::Scope(rejection) | Self::Limited { rejection, .. } => rejection,
        }
    }

    /// When to come back, for a rate limit.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Scope(_) => None,
            Self::Limited { decision, .. } => decision.retry_after,
        }
    }
}

/// The rate limiter of a [`WardenLayer`].
#[derive(Clone)]
pub struct RateLimitInfo {
    enabled: bool,
    storage: &'static str,
    #[cfg(feature = "redis")]
    redis: Option<crate::rate_limit::RedisHealth>,
}

impl fmt::Debug for RateLimitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitInfo")
            .field("enabled", &self.enabled)
            .field("storage", &self.storage)
            .field("degraded", &self.is_degraded())
            .finish()
    }
}

impl RateLimitInfo {
    /// Whether requests are rate limited (`MCP_RATE_LIMIT_ENABLED`).
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `memory` or `redis` (`MCP_RATE_LIMIT_STORAGE`).
    #[must_use]
    pub fn storage(&self) -> &'static str {
        self.storage
    }

    /// Whether a shared store decides without its backend right now.
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.redis {
            return redis.is_degraded();
        }
        false
    }
}

impl fmt::Debug for WardenLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WardenLayer")
            .field("client_cert", &self.client_cert.is_some())
            .field("per_ip", &self.per_ip.is_some())
            .field("auth", &self.auth)
            .field("per_tool", &self.per_tool.is_some())
            .field("per_principal", &self.per_principal.is_some())
            .field("resource_url", &self.parts.resource_url)
            .finish_non_exhaustive()
    }
}

impl WardenLayer {
    /// Builds every layer `config` turns on.
    ///
    /// # Errors
    ///
    /// A setting the layers cannot use, by variable name: JWT
    /// authentication without a key source (`MCP_JWT_SECRET`), an
    /// unreadable key or key file, a quota or header that cannot be made,
    /// Redis storage without the `redis` feature.
    pub fn from_config(config: &WardenConfig) -> Result<Self, ConfigError> {
        let mut warnings = Vec::new();
        let resource_url = resource_url(config);
        let metadata_url = metadata_url(&resource_url);
        let jwt = if config.auth_mode.jwt() {
            Some(jwt(config, &mut warnings)?)
        } else {
            None
        };
        let (api_keys, api_key_salt) = if config.auth_mode.api_key() {
            let salt = match &config.api_key_salt {
                Some(salt) => salt.as_bytes().to_vec(),
                None => random_salt()?,
            };
            (Some(api_keys(config, &salt)?), salt)
        } else {
            (None, Vec::new())
        };
        let auth = match (config.auth_mode, jwt.clone(), api_keys.clone()) {
            (AuthMode::None, ..) => {
                warnings.push(
                    "MCP_AUTH_MODE=none: every caller is admitted with every scope".to_owned(),
                );
                AuthLayer::anonymous()
            }
            (_, Some(jwt), Some(keys)) => AuthLayer::jwt_or_api_key(jwt, keys),
            (_, Some(jwt), None) => AuthLayer::jwt(jwt),
            (_, None, Some(keys)) => AuthLayer::api_keys(keys),
            (mode, None, None) => {
                return Err(ConfigError::new(
                    "MCP_AUTH_MODE",
                    format!("`{mode}` accepts no credential this crate knows"),
                ));
            }
        }
        .resource_metadata(metadata_url.clone())
        .allow_query_credentials(config.ws_allow_query_auth)
        .dpop(config.dpop)
        .dpop_iat_window(
            Duration::from_secs(config.dpop_max_age_seconds),
            crate::auth::DEFAULT_DPOP_FUTURE_SKEW,
        );
        // A DPoP proof names the URL the client called: the resource URL's
        // origin when one is set, else the request's own.
        let auth = match &config.resource_url {
            Some(url) => auth.try_dpop_origins([url])?,
            None => auth,
        };
        let auth = with_introspection(auth, config)?;
        // The exchange needs the caller's verified token.
        let auth = auth.keep_access_token(config.token_exchange_url.is_some());
        #[cfg(not(feature = "token-exchange"))]
        if config.token_exchange_url.is_some() {
            return Err(ConfigError::new(
                "MCP_TOKEN_EXCHANGE_URL",
                "this build has no token exchange (the `token-exchange` feature)",
            ));
        }

        let max_body = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
        // The one reading of `MCP_TOOL_SCOPES` (`"*"` is the default).
        let tool_policy = if config.tool_scopes.is_empty() {
            None
        } else {
            Some(
                ToolPolicy::try_from_entries(config.tool_scopes.iter().cloned())?
                    .resource_metadata(metadata_url.clone()),
            )
        };
        let limits = Limits::of(config)?;
        // The tool a request calls is found by the policy layer, so it reads
        // bodies for per-tool quotas too.
        let policy = if tool_policy.is_some() || limits.per_tool.is_some() {
            McpPolicyLayer::new(tool_policy.clone().unwrap_or_default()).max_body_bytes(max_body)
        } else {
            McpPolicyLayer::pass_through()
        };
        let ip_lists = IpSetHandle::new(ip_set(config));
        Ok(Self {
            client_ip: client_ip(config),
            ip_filter: IpFilterLayer::with_handle(ip_lists.clone()),
            client_cert: client_cert(config)?,
            per_ip: limits.per_ip,
            body_limit: BodyLimitLayer::new(config.max_body_bytes),
            auth,
            host_origin: host_origin(config)?,
            policy,
            per_tool: limits.per_tool,
            per_principal: limits.per_principal,
            parts: Arc::new(Parts {
                jwt,
                api_keys,
                api_key_salt,
                ip_lists,
                warnings,
                resource_url,
                metadata_url,
                tool_policy,
                rate_limit: limits.info,
            }),
        })
    }

    /// Replaces the authentication layer (for example with one whose JWT
    /// verifier the application built itself).
    pub fn with_auth(mut self, auth: AuthLayer) -> Self {
        self.auth = auth;
        self
    }

    /// The authentication layer, to check a credential again after the
    /// request that presented it was admitted (see
    /// [`AuthLayer::authenticate`]): a long-lived session re-checks its
    /// credential against the keys a reload swapped in.
    pub fn auth(&self) -> &AuthLayer {
        &self.auth
    }

    /// The JWT verifier, when JWTs are accepted (to
    /// [`prefetch`](JwtAuth::prefetch) its keys, or read its cache).
    #[must_use]
    pub fn jwt(&self) -> Option<&JwtAuth> {
        self.parts.jwt.as_ref()
    }

    /// The API keys, when they are accepted.
    #[must_use]
    pub fn api_keys(&self) -> Option<&ApiKeys> {
        self.parts.api_keys.as_ref()
    }

    /// The IP lists in force; replace them to reload.
    #[must_use]
    pub fn ip_lists(&self) -> &IpSetHandle {
        &self.parts.ip_lists
    }

    /// The per-tool scopes (`MCP_TOOL_SCOPES`), if any.
    #[must_use]
    pub fn tool_policy(&self) -> Option<&ToolPolicy> {
        self.parts.tool_policy.as_ref()
    }

    /// The rate limiter.
    #[must_use]
    pub fn rate_limit(&self) -> &RateLimitInfo {
        &self.parts.rate_limit
    }

    /// Settings that work but deserve a look, for the start-up log: a short
    /// development secret, unchecked audiences, no authentication.
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.parts.warnings
    }

    /// The protected resource as clients name it (`MCP_RESOURCE_URL`, or
    /// `http://<host>:<port>/mcp`).
    #[must_use]
    pub fn resource_url(&self) -> &str {
        &self.parts.resource_url
    }

    /// Where its RFC 9728 metadata is published (named in every 401).
    #[must_use]
    pub fn metadata_url(&self) -> &str {
        &self.parts.metadata_url
    }

    /// The one decision on running a tool, for every way a tool is run
    /// besides an MCP request through this layer (which meets the same
    /// rules in [`McpPolicyLayer`] and the per-tool [`RateLimitLayer`]):
    /// `head` is a request that already passed the perimeter (it carries
    /// the [`Principal`] and [`ClientIp`](crate::client_ip::ClientIp)
    /// the perimeter left) plus an [`McpCall`](crate::principal::McpCall) naming the
    /// tool — for example a REST route that runs a tool.
    ///
    /// In order, stopping at the first refusal: the tool policy
    /// (`MCP_TOOL_SCOPES`, the same [`ToolPolicy`] and scope matching as
    /// [`McpPolicyLayer`]) → [`CallRefused::Scope`], 403
    /// `insufficient_scope`; then the tool's quota (`MCP_TOOL_RATE_LIMITS`,
    /// the same allowance as MCP calls of the tool) →
    /// [`CallRefused::Limited`], 429 `rate_limited`. The per-address and
    /// per-principal limits are not counted again: the request was counted
    /// when it passed the perimeter. A `head` without a `tools/call` is
    /// admitted. The future does not borrow `head`.
    pub fn check_call<B>(
        &self,
        head: &Request<B>,
    ) -> impl Future<Output = Result<(), CallRefused>> + Send + 'static {
        let refused = self.policy_refusal(head);
        let quota = self
            .per_tool
            .as_ref()
            .map(|limit| limit.check_refusal(head));
        async move {
            if let Some(rejection) = refused {
                return Err(CallRefused::Scope(rejection));
            }
            if let Some(quota) = quota {
                quota.await.map_err(CallRefused::limited)?;
            }
            Ok(())
        }
    }

    /// Checks one message of a long-lived connection (a WebSocket session)
    /// as an HTTP request is checked: the rate limit per client address,
    /// then [`check_call`](Self::check_call) (tool policy, then the tool's
    /// quota), then the rate limit per principal — in the perimeter's
    /// order, stopping at the first refusal, so messages and requests draw
    /// on one allowance and meet one policy. `head` carries what the
    /// perimeter left on the upgrade request ([`Principal`],
    /// [`ClientIp`](crate::client_ip::ClientIp)) and the message's
    /// [`McpCall`](crate::principal::McpCall).
    ///
    /// Resolves to `Err` with why the message was refused; `Ok` when
    /// admitted. The future does not borrow `head`.
    pub fn check_message<B>(
        &self,
        head: &Request<B>,
    ) -> impl Future<Output = Result<(), CallRefused>> + Send + 'static {
        // Each check is lazy: a limit is counted only once the ones before
        // it admitted the message.
        let per_ip = self.per_ip.as_ref().map(|limit| limit.check_refusal(head));
        let call = self.check_call(head);
        let per_principal = self
            .per_principal
            .as_ref()
            .map(|limit| limit.check_refusal(head));
        async move {
            if let Some(check) = per_ip {
                check.await.map_err(CallRefused::limited)?;
            }
            call.await?;
            if let Some(check) = per_principal {
                check.await.map_err(CallRefused::limited)?;
            }
            Ok(())
        }
    }

    /// Whether the caller `head` carries (its [`Principal`]; none: no
    /// scopes) may call `tool` under `MCP_TOOL_SCOPES`: the filter of
    /// `tools/list` answers, for any other listing of tools.
    #[must_use]
    pub fn may_call<B>(&self, head: &Request<B>, tool: &str) -> bool {
        self.parts
            .tool_policy
            .as_ref()
            .is_none_or(|policy| policy.allows_for(head.extensions().get::<Principal>(), tool))
    }

    /// The 403 for the `tools/call` of `head`, if its caller may not make it.
    fn policy_refusal<B>(&self, head: &Request<B>) -> Option<crate::reject::Rejection> {
        let policy = self.parts.tool_policy.as_ref()?;
        let call = head.extensions().get::<crate::principal::McpCall>()?;
        let tool = call.tool().filter(|_| call.method() == "tools/call")?;
        let principal = head.extensions().get::<Principal>();
        let rejection = policy.refusal(principal, tool)?;
        crate::audit::denied(
            crate::reject::Reason::InsufficientScope,
            head.extensions(),
            principal.map(Principal::subject),
            principal.and_then(Principal::key_id),
            rejection.detail(),
        );
        Some(rejection)
    }

    /// The hot reloads of this perimeter, reading the settings again
    /// through `load` (for example [`WardenConfig::from_env`], which reads
    /// `MCP_CONFIG_FILE` again): the IP lists, the API keys (listed keys
    /// and `MCP_API_KEYS_FILE`, under the salt in use) and the
    /// `MCP_JWKS_FILE` keys. Each is read and checked whole, then swapped
    /// in; a bad one is logged and the old one stays.
    pub fn reload_handle(
        &self,
        load: Arc<dyn Fn() -> Result<WardenConfig, ConfigError> + Send + Sync>,
    ) -> ReloadHandle {
        let lists = self.parts.ip_lists.clone();
        let mut handle = ReloadHandle::new().step("ip lists", {
            let load = Arc::clone(&load);
            move || {
                let config = load()?;
                lists.replace(ip_set(&config));
                Ok(format!(
                    "{} allowed, {} blocked",
                    config.allowed_ips.len(),
                    config.blocked_ips.len()
                ))
            }
        });
        if let Some(keys) = self.parts.api_keys.clone() {
            let salt = self.parts.api_key_salt.clone();
            let load = Arc::clone(&load);
            handle = handle.step("api keys", move || {
                let config = load()?;
                let fresh = api_keys(&config, &salt)?;
                let n = keys
                    .replace_from(&fresh)
                    .map_err(|e| e.for_setting("MCP_API_KEY_SALT"))?;
                Ok(format!("{n} keys"))
            });
        }
        if let Some(jwt) = self.parts.jwt.clone() {
            handle = handle.step("jwks file", move || {
                let config = load()?;
                let Some(path) = &config.jwks_file else {
                    return Ok("no MCP_JWKS_FILE".to_owned());
                };
                let json = read("MCP_JWKS_FILE", path)?;
                jwt.replace_jwks(&json)
                    .map_err(|e| e.for_setting("MCP_JWKS_FILE"))?;
                Ok(path.display().to_string())
            });
        }
        handle
    }
}

/// `MCP_RESOURCE_URL`, or `http://<host>:<port>/mcp` (a wildcard host as
/// `127.0.0.1`).
#[must_use]
pub fn resource_url(config: &WardenConfig) -> String {
    if let Some(url) = &config.resource_url {
        return url.clone();
    }
    let host = match config.host.as_str() {
        "0.0.0.0" | "::" | "[::]" => "127.0.0.1",
        host => host,
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("http://{host}:{}/mcp", config.port)
}

/// The RFC 9728 (§3.1) metadata URL of `resource`: the well-known path
/// inserted between host and path.
#[must_use]
pub fn metadata_url(resource: &str) -> String {
    let (scheme, rest) = resource.split_once("://").unwrap_or(("https", resource));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        format!("{scheme}://{authority}/.well-known/oauth-protected-resource")
    } else {
        format!("{scheme}://{authority}/.well-known/oauth-protected-resource/{path}")
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(setting, format!("cannot read {}: {e}", path.display())))
}

fn random_salt() -> Result<Vec<u8>, ConfigError> {
    let mut salt = vec![0u8; 32];
    getrandom::fill(&mut salt).map_err(|e| {
        ConfigError::new(
            "MCP_API_KEY_SALT",
            format!("no random source for a salt: {e}"),
        )
    })?;
    Ok(salt)
}

/// `auth`, also asking `MCP_INTROSPECTION_URL` about opaque tokens when it
/// is set: its audiences those of JWTs (the resource URL outside
/// development), its issuers `MCP_JWT_ISSUER`.
#[cfg(feature = "introspection")]
fn with_introspection(auth: AuthLayer, config: &WardenConfig) -> Result<AuthLayer, ConfigError> {
    use crate::auth::{Introspection, IntrospectionFailMode};
    let Some(url) = &config.introspection_url else {
        return Ok(auth);
    };
    let client_auth = client_auth(
        config.introspection_client_auth.as_deref(),
        config.introspection_client_secret.as_deref(),
        config.introspection_client_key_file.as_deref(),
        "MCP_INTROSPECTION_CLIENT_KEY_FILE",
    )?;
    let introspection = Introspection::builder(
        url.clone(),
        config.introspection_client_id.clone().unwrap_or_default(),
        client_auth,
    )
    .cache_ttl(Duration::from_secs(config.introspection_cache_ttl_seconds))
    .fail_mode(if config.introspection_fail_mode == "cached" {
        IntrospectionFailMode::Cached
    } else {
        IntrospectionFailMode::Closed
    })
    .issuer(config.jwt_issuers.iter().cloned())
    .audience(audiences(config))
    .leeway(Duration::from_secs(config.jwt_leeway_seconds))
    .build()?;
    Ok(auth.introspection(introspection))
}

/// The client authentication its settings give an OAuth client: the
/// checked `MCP_*_CLIENT_AUTH`, and its secret or key file (`key_setting`).
#[cfg(any(feature = "introspection", feature = "token-exchange"))]
fn client_auth(
    auth: Option<&str>,
    secret: Option<&str>,
    key_file: Option<&std::path::Path>,
    key_setting: &'static str,
) -> Result<crate::auth::ClientAuth, ConfigError> {
    use crate::auth::ClientAuth;
    let secret = || secret.unwrap_or_default().to_owned();
    Ok(match auth {
        Some("client_secret_post") => ClientAuth::SecretPost(secret()),
        Some("private_key_jwt") => {
            let path = key_file.unwrap_or(std::path::Path::new(""));
            let pem = std::fs::read(path)
                .map_err(|e| ConfigError::new(key_setting, format!("cannot read it: {e}")))?;
            ClientAuth::private_key_pem(&pem, None).map_err(|e| e.for_setting(key_setting))?
        }
        _ => ClientAuth::SecretBasic(secret()),
    })
}

/// The token exchange of `MCP_TOKEN_EXCHANGE_*` (RFC 8693), if its URL is
/// set: the gateway's client credentials at the token endpoint, and the
/// issuers `MCP_JWT_ISSUER` (audiences of a `private_key_jwt` assertion).
/// [`WardenLayer::from_config`] keeps the callers' verified tokens for it
/// when the URL is set.
///
/// # Errors
///
/// The key file cannot be read or holds no private key, or a setting is
/// unusable.
#[cfg(feature = "token-exchange")]
#[cfg_attr(docsrs, doc(cfg(feature = "token-exchange")))]
pub fn token_exchange(
    config: &WardenConfig,
) -> Result<Option<crate::auth::TokenExchange>, ConfigError> {
    let Some(url) = &config.token_exchange_url else {
        return Ok(None);
    };
    let auth = client_auth(
        config.token_exchange_client_auth.as_deref(),
        config.token_exchange_client_secret.as_deref(),
        config.token_exchange_client_key_file.as_deref(),
        "MCP_TOKEN_EXCHANGE_CLIENT_KEY_FILE",
    )?;
    crate::auth::TokenExchange::builder(
        url.clone(),
        config.token_exchange_client_id.clone().unwrap_or_default(),
        auth,
    )
    .issuer(config.jwt_issuers.iter().cloned())
    .build()
    .map(Some)
}

/// Without the `introspection` feature, `MCP_INTROSPECTION_URL` cannot be
/// honoured: refused rather than ignored.
#[cfg(not(feature = "introspection"))]
fn with_introspection(auth: AuthLayer, config: &WardenConfig) -> Result<AuthLayer, ConfigError> {
    match config.introspection_url {
        Some(_) => Err(ConfigError::new(
            "MCP_INTROSPECTION_URL",
            "this build has no token introspection (the `introspection` feature)",
        )),
        None => Ok(auth),
    }
}

/// The audiences a token must name, JWT or introspected: a resource server
/// accepts only tokens issued for it, so outside development the audience
/// is always checked, defaulting to the resource URL (set or derived).
fn audiences(config: &WardenConfig) -> Vec<String> {
    if !config.jwt_audiences.is_empty() {
        config.jwt_audiences.clone()
    } else if config.resource_url.is_some() || config.environment.follows_production_rules() {
        vec![resource_url(config)]
    } else {
        Vec::new()
    }
}

/// The JWT verifier of `config`.
fn jwt(config: &WardenConfig, warnings: &mut Vec<String>) -> Result<JwtAuth, ConfigError> {
    let mut builder = JwtAuth::builder()
        .leeway(Duration::from_secs(config.jwt_leeway_seconds))
        .issuer(config.jwt_issuers.iter().cloned());
    let audiences = audiences(config);
    if audiences.is_empty() {
        warnings.push(
            "token audiences (aud) are not checked (development only): set MCP_RESOURCE_URL or MCP_JWT_AUDIENCE"
                .to_owned(),
        );
    }
    builder = builder.audience(audiences);
    let algorithm = |default: Algorithm| -> Result<Algorithm, ConfigError> {
        match &config.jwt_algorithm {
            Some(name) => name.parse().map_err(|_| {
                ConfigError::new("MCP_JWT_ALGORITHM", format!("`{name}` is not supported"))
            }),
            None => Ok(default),
        }
    };
    let (builder, setting) = if let Some(secret) = &config.jwt_secret {
        let mut b = builder.hmac_secret(secret, algorithm(Algorithm::HS256)?);
        if secret.len() < crate::config::MIN_JWT_SECRET_BYTES {
            warnings.push(format!(
                "MCP_JWT_SECRET is {} bytes; production requires at least {}",
                secret.len(),
                crate::config::MIN_JWT_SECRET_BYTES
            ));
            b = b.allow_short_secret();
        }
        (b, "MCP_JWT_SECRET")
    } else if let Some(path) = &config.jwt_public_key_file {
        (
            builder.public_key_file(path, algorithm(Algorithm::RS256)?),
            "MCP_JWT_PUBLIC_KEY_FILE",
        )
    } else if let Some(path) = &config.jwks_file {
        (builder.jwks_file(path), "MCP_JWKS_FILE")
    } else if let Some(url) = &config.jwks_url {
        (jwks_url(builder, url)?, "MCP_JWKS_URL")
    } else {
        return Err(ConfigError::new(
            "MCP_JWT_SECRET",
            "JWT authentication needs a key: set MCP_JWT_SECRET, MCP_JWT_PUBLIC_KEY_FILE, MCP_JWKS_FILE or MCP_JWKS_URL (or MCP_AUTH_MODE=api_key)",
        ));
    };
    builder.build().map_err(|e| e.for_setting(setting))
}

#[cfg(feature = "jwks-url")]
fn jwks_url(
    builder: crate::auth::JwtAuthBuilder,
    url: &str,
) -> Result<crate::auth::JwtAuthBuilder, ConfigError> {
    Ok(builder.jwks_url(crate::auth::JwksUrl::new(url.to_owned())))
}

#[cfg(not(feature = "jwks-url"))]
fn jwks_url(
    _: crate::auth::JwtAuthBuilder,
    _: &str,
) -> Result<crate::auth::JwtAuthBuilder, ConfigError> {
    Err(ConfigError::new(
        "MCP_JWKS_URL",
        "fetching keys from a URL needs the `jwks-url` feature",
    ))
}

/// The API keys of `config` (`MCP_API_KEYS`, each with every scope, and
/// `MCP_API_KEYS_FILE`) under `salt`.
fn api_keys(config: &WardenConfig, salt: &[u8]) -> Result<ApiKeys, ConfigError> {
    let keys = ApiKeys::new(salt).map_err(|e| e.for_setting("MCP_API_KEY_SALT"))?;
    for (n, key) in config.api_keys.iter().enumerate() {
        let id = format!("api-key-{}", n + 1);
        let principal = Principal::builder(id.clone(), AuthMethod::ApiKey)
            .key_id(id)
            .scopes(["*"])
            .build();
        keys.insert_key(key, principal)
            .map_err(|e| e.for_setting("MCP_API_KEYS"))?;
    }
    if let Some(path) = &config.api_keys_file {
        let text = String::from_utf8(read("MCP_API_KEYS_FILE", path)?)
            .map_err(|_| ConfigError::new("MCP_API_KEYS_FILE", "the file is not UTF-8 text"))?;
        keys.load_lines(&text)
            .map_err(|e| e.for_setting("MCP_API_KEYS_FILE"))?;
    }
    Ok(keys)
}

/// The allow and deny lists of `config`.
fn ip_set(config: &WardenConfig) -> IpSet {
    IpSet::builder()
        .allow_nets(config.allowed_ips.iter().copied())
        .deny_nets(config.blocked_ips.iter().copied())
        .build()
}

/// The client address: the peer, or behind the trusted proxies when
/// `MCP_TRUST_X_FORWARDED` says so. `MCP_TRUSTED_PROXIES` was parsed once, by
/// [`WardenConfig`]; its prefixes pass as they are.
pub fn client_ip(config: &WardenConfig) -> ClientIpLayer {
    if !config.trust_x_forwarded {
        return ClientIpLayer::new();
    }
    ClientIpLayer::new()
        .trusted_proxies(config.trusted_proxies.iter().copied())
        .depth(config.trusted_proxy_depth)
}

fn client_cert(config: &WardenConfig) -> Result<Option<ClientCertLayer>, ConfigError> {
    if !config.client_cert_required {
        return Ok(None);
    }
    let layer = ClientCertLayer::new()
        .try_header(&config.client_cert_header, &config.client_cert_header_value)
        .map_err(|e| {
            let setting = if e.setting() == "client_cert_header" {
                "MCP_CLIENT_CERT_HEADER"
            } else {
                "MCP_CLIENT_CERT_HEADER_VALUE"
            };
            e.for_setting(setting)
        })?
        .trusted_proxies(config.trusted_proxies.iter().copied());
    Ok(Some(layer))
}

/// `Host` and `Origin` rules: `MCP_ALLOWED_HOSTS`, and as origins
/// `MCP_ALLOWED_ORIGINS` plus the CORS origins (a browser page granted CORS
/// sends its `Origin`); CORS `*` admits any origin.
fn host_origin(config: &WardenConfig) -> Result<HostOriginLayer, ConfigError> {
    let any_origin = config.cors_origins.iter().any(|o| o == "*");
    let origins = config
        .allowed_origins
        .iter()
        .chain(config.cors_origins.iter().filter(|_| !any_origin));
    let layer = HostOriginLayer::new()
        .try_allowed_hosts(&config.allowed_hosts)
        .map_err(|e| e.for_setting("MCP_ALLOWED_HOSTS"))?
        .try_allowed_origins(origins)
        .map_err(|e| e.for_setting("MCP_ALLOWED_ORIGINS"))?;
    Ok(if any_origin {
        layer.allow_any_origin()
    } else {
        layer
    })
}

/// The rate limits of the settings, sharing one store.
struct Limits {
    per_ip: Option<RateLimitLayer>,
    per_principal: Option<RateLimitLayer>,
    per_tool: Option<RateLimitLayer>,
    info: RateLimitInfo,
}

impl Limits {
    fn of(config: &WardenConfig) -> Result<Self, ConfigError> {
        let mut info = RateLimitInfo {
            enabled: config.rate_limit_enabled,
            storage: config.rate_limit_storage.as_str(),
            #[cfg(feature = "redis")]
            redis: None,
        };
        if !config.rate_limit_enabled {
            return Ok(Self {
                per_ip: None,
                per_principal: None,
                per_tool: None,
                info,
            });
        }
        let local: Arc<dyn Store> =
            Arc::new(MemoryStore::with_max_keys(config.rate_limit_max_keys));
        let store = match config.rate_limit_storage {
            RateLimitStorage::Redis => redis_store(config, local, &mut info)?,
            _ => local,
        };
        let quota = config.rate_limit_quota.to_quota()?;
        let per_ip = RateLimitLayer::new(
            quota,
            KeyBy::client_ip_v6_prefix(config.rate_limit_ipv6_prefix),
            Arc::clone(&store),
        )
        .policy_name("ip");
        let per_principal = RateLimitLayer::new(
            quota,
            KeyBy::subject_v6_prefix(config.rate_limit_ipv6_prefix),
            Arc::clone(&store),
        )
        .policy_name("principal");
        let per_tool = if config.tool_rate_limits.is_empty() {
            None
        } else {
            let tools = config
                .tool_rate_limits
                .iter()
                .map(|(tool, rpm)| {
                    Quota::per_minute(*rpm)
                        .map(|quota| (tool.clone(), quota))
                        .map_err(|e| e.for_setting("MCP_TOOL_RATE_LIMITS"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(RateLimitLayer::per_tool(
                tools,
                KeyBy::subject_v6_prefix(config.rate_limit_ipv6_prefix),
                store,
            ))
        };
        Ok(Self {
            per_ip: Some(per_ip),
            per_principal: Some(per_principal),
            per_tool,
            info,
        })
    }
}

/// The Redis store of `MCP_REDIS_URL`, falling back to `local` as
/// `MCP_RATE_LIMIT_FAIL_MODE` says.
#[cfg(feature = "redis")]
fn redis_store(
    config: &WardenConfig,
    local: Arc<dyn Store>,
    info: &mut RateLimitInfo,
) -> Result<Arc<dyn Store>, ConfigError> {
    let url = config.redis_url.as_deref().ok_or_else(|| {
        ConfigError::new("MCP_REDIS_URL", "MCP_RATE_LIMIT_STORAGE=redis needs it")
    })?;
    let store = match config.redis_ca_pem()? {
        Some(pem) => crate::rate_limit::RedisStore::with_root_certificates(url, &pem),
        None => crate::rate_limit::RedisStore::new(url),
    }
    .map_err(crate::config::relabel_redis_error)?;
    let store = store
        .prefix(config.rate_limit_redis_prefix.clone())
        .fail_mode(config.rate_limit_fail_mode)
        .fallback(local);
    info.redis = Some(store.health());
    Ok(Arc::new(store))
}

#[cfg(not(feature = "redis"))]
fn redis_store(
    _: &WardenConfig,
    _: Arc<dyn Store>,
    _: &mut RateLimitInfo,
) -> Result<Arc<dyn Store>, ConfigError> {
    Err(ConfigError::new(
        "MCP_RATE_LIMIT_STORAGE",
        "redis needs the `redis` feature of tower-warden",
    ))
}

/// The nested services, outermost first.
type Stack<S> = Guard<PerIp<S>, FrontChecks>;
type PerIp<S> = Optional<RateLimit<Checked<S>, DefaultResponder>, Checked<S>>;
type Checked<S> =
    BodyLimit<Auth<McpPolicy<PerTool<S>, DefaultResponder>, DefaultResponder>, DefaultResponder>;
type PerTool<S> = Optional<RateLimit<PerPrincipal<S>, DefaultResponder>, PerPrincipal<S>>;
type PerPrincipal<S> = Optional<RateLimit<S, DefaultResponder>, S>;

fn optional<L: Layer<S>, S>(layer: Option<&L>, inner: S) -> Optional<L::Service, S> {
    match layer {
        Some(layer) => Optional::On(layer.layer(inner)),
        None => Optional::Off(inner),
    }
}

impl<S> Layer<S> for WardenLayer {
    type Service = Warden<S>;

    fn layer(&self, inner: S) -> Warden<S> {
        let inner = optional(self.per_principal.as_ref(), inner);
        let inner = optional(self.per_tool.as_ref(), inner);
        let inner = self
            .body_limit
            .layer(self.auth.layer(self.policy.layer(inner)));
        let inner = optional(self.per_ip.as_ref(), inner);
        let front = FrontChecks {
            client_ip: self.client_ip.clone(),
            ip_filter: self.ip_filter.clone(),
            client_cert: self.client_cert.clone(),
            host_origin: self.host_origin.clone(),
        };
        Warden {
            inner: Guard::new(inner, front),
        }
    }
}

/// The synchronous checks at the front of [`Warden`], in order: the
/// client address ([`ClientIpLayer`]), the address lists
/// ([`IpFilterLayer`]), the client certificate when required
/// ([`ClientCertLayer`]), and `Host` / `Origin` ([`HostOriginLayer`]).
/// Each decides exactly as its own layer would; run by one [`Guard`], they
/// cost the request one call and its response one wrapper instead of four.
#[derive(Clone, Debug)]
pub struct FrontChecks {
    client_ip: ClientIpLayer,
    ip_filter: IpFilterLayer,
    client_cert: Option<ClientCertLayer>,
    host_origin: HostOriginLayer,
}

impl Check for FrontChecks {
    type Responder = DefaultResponder;

    #[inline]
    fn check<B>(&self, request: &mut Request<B>) -> Result<(), Rejection> {
        // Each part records its own admission (`LAYER` stays empty).
        self.client_ip.check(request)?;
        admitted(<ClientIpLayer as Check>::LAYER);
        self.ip_filter.check(request)?;
        admitted(<IpFilterLayer as Check>::LAYER);
        if let Some(client_cert) = &self.client_cert {
            client_cert.check(request)?;
            admitted(<ClientCertLayer as Check>::LAYER);
        }
        self.host_origin.check(request)?;
        admitted(<HostOriginLayer as Check>::LAYER);
        Ok(())
    }

    fn responder(&self) -> &DefaultResponder {
        &DefaultResponder
    }
}

/// The service of [`WardenLayer`]: every configured layer around `S`.
#[derive(Clone)]
pub struct Warden<S> {
    inner: Stack<S>,
}

impl<S> fmt::Debug for Warden<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warden").finish_non_exhaustive()
    }
}

impl<S, ReqBody> Service<Request<ReqBody>> for Warden<S>
where
    Stack<S>: Service<Request<ReqBody>>,
{
    type Response = <Stack<S> as Service<Request<ReqBody>>>::Response;
    type Error = <Stack<S> as Service<Request<ReqBody>>>::Error;
    type Future = <Stack<S> as Service<Request<ReqBody>>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        self.inner.call(request)
    }
}

/// A layer's service when the layer is on, or the inner service when it is
/// off; either way the response body is a [`ResponseBody`].
#[derive(Clone, Debug)]
pub enum Optional<A, S> {
    /// The layer is on.
    On(A),
    /// The layer is off.
    Off(S),
}

impl<A, S, ReqBody, ResBody> Service<Request<ReqBody>> for Optional<A, S>
where
    A: Service<Request<ReqBody>, Response = Response<ResponseBody<ResBody>>>,
    S: Service<Request<ReqBody>, Response = Response<ResBody>, Error = A::Error>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = A::Error;
    type Future = OptionalFuture<A::Future, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::On(a) => a.poll_ready(cx),
            Self::Off(s) => s.poll_ready(cx),
        }
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self {
            Self::On(a) => OptionalFuture::on(a.call(request)),
            Self::Off(s) => OptionalFuture::off(s.call(request)),
        }
    }
}

pin_project! {
    /// The response future of [`Optional`].
    pub struct OptionalFuture<A, S> {
        #[pin]
        kind: Kind<A, S>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<A, S> {
        On { #[pin] future: A },
        Off { #[pin] future: S },
    }
}

impl<A, S> OptionalFuture<A, S> {
    fn on(future: A) -> Self {
        Self {
            kind: Kind::On { future },
        }
    }

    fn off(future: S) -> Self {
        Self {
            kind: Kind::Off { future },
        }
    }
}

impl<A, S> fmt::Debug for OptionalFuture<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::On { .. } => "OptionalFuture::On",
            Kind::Off { .. } => "OptionalFuture::Off",
        })
    }
}

impl<A, S, ResBody, E> Future for OptionalFuture<A, S>
where
    A: Future<Output = Result<Response<ResponseBody<ResBody>>, E>>,
    S: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::On { future } => future.poll(cx),
            KindProj::Off { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(ResponseBody::inner))),
        }
    }
}

#[cfg(test)]
#[path = "stack/tests.rs"]
mod tests;
