//! Tower layers that put a production security perimeter in front of MCP
//! (Model Context Protocol) servers and any axum or tonic app.
//!
//! Each layer does one job, denies through one [`Rejection`]
//! type with a stable machine code, and leaves what it learned in the request
//! extensions for the layers and handlers after it:
//!
//! | layer | protects against | leaves | refuses with |
//! |---|---|---|---|
//! | [`ClientIpLayer`] | spoofed `X-Forwarded-For` / `Forwarded` | [`ClientIp`] | 400 `forwarded_invalid` |
//! | [`IpFilterLayer`] (feature `ip-filter`) | callers outside your networks | — | 403 `ip_denied` |
//! | [`ClientCertLayer`] (feature `client-cert`) | callers without a certificate verified by your mTLS proxy | [`ClientCertInfo`] | 403 `client_cert_required` |
//! | [`BodyLimitLayer`] (feature `body-limit`) | oversized and endless (chunked) bodies | — | 413 `payload_too_large` |
//! | [`HostOriginLayer`](mcp::HostOriginLayer) (feature `mcp`) | DNS rebinding, cross-site browser calls | — | 403 `host_forbidden` / `origin_forbidden` |
//! | [`AuthLayer`](auth::AuthLayer) (feature `auth`) | callers without a valid JWT or API key | [`Principal`] | 401 `unauthenticated` / `invalid_credentials` / `token_expired` |
//! | [`RequireLayer`](auth::RequireLayer) (feature `auth`) | callers without a needed scope or role | — | 403 `insufficient_scope` |
//! | [`McpPolicyLayer`](mcp::McpPolicyLayer) (feature `mcp`) | `tools/call` beyond the caller's scopes; lists tools it may not call | [`McpCall`] | 403 `insufficient_scope` |
//! | [`SessionBindingLayer`](mcp::SessionBindingLayer) (feature `mcp`) | a session id used by anyone but the principal that opened it | — | 404 `session_not_found` |
//! | [`CircuitBreakerLayer`](circuit_breaker::CircuitBreakerLayer) (feature `circuit-breaker`) | hammering a service that keeps failing: opens after N consecutive failures or a failure rate, probes when half-open; keyed per upstream with `CircuitBreakers` | — | 503 `circuit_open` with `Retry-After` |
//! | [`NamespaceLayer`](namespace::NamespaceLayer) (feature `namespace`) | a tenant reaching into another tenant's namespace (path segment, header or resolver vs. the principal's) | [`Namespace`](namespace::Namespace) | 403 `namespace_forbidden` |
//! | [`ResponseLimitLayer`](mcp::ResponseLimitLayer) (feature `response-limit`) | answers that are too large or never end: body bytes, and per event stream bytes per event, bytes, events and duration | — | 502 JSON-RPC error for a declared body over the cap; a cut stream ends with a JSON-RPC error event |
//! | [`RateLimitLayer`](rate_limit::RateLimitLayer) (feature `rate-limit`) | callers that send too much: GCRA quotas per address, principal, API key, namespace, tool, header or your rule; in a bounded [`MemoryStore`](rate_limit::MemoryStore) or shared through Redis | — | 429 `rate_limited` with `Retry-After` |
//!
//! [`JsonRpcErrorsLayer`](mcp::JsonRpcErrorsLayer) (feature `mcp`) makes an
//! MCP endpoint answer malformed bodies and transport errors with JSON-RPC
//! error objects, and [`WardenConfig`](config::WardenConfig) loads every
//! setting from `MCP_*` environment variables.
//!
//! [`Rejection`]: reject::Rejection
//! [`ClientIpLayer`]: client_ip::ClientIpLayer
//! [`ClientIp`]: client_ip::ClientIp
//! [`IpFilterLayer`]: ip_filter::IpFilterLayer
//! [`ClientCertLayer`]: client_cert::ClientCertLayer
//! [`ClientCertInfo`]: client_cert::ClientCertInfo
//! [`BodyLimitLayer`]: body_limit::BodyLimitLayer
//! [`Principal`]: principal::Principal
//! [`McpCall`]: principal::McpCall
//!
//! HTTP clients receive RFC 9457 `application/problem+json`; gRPC clients a
//! trailers-only `grpc-status` they read as `PERMISSION_DENIED`,
//! `RESOURCE_EXHAUSTED`, ... (see [`reject`]). Every layer works unchanged
//! in an axum `Router` and a tonic `Server`, is generic over request and
//! response bodies, and never boxes a future on the request path.
//!
//! # Order
//!
//! Cheap checks first: client address → IP filter → client certificate →
//! rate limit per address → body limit → authentication → scope
//! requirements / namespace / MCP policy (and per-tool limits) → rate
//! limit per principal → circuit breaker → your service. With `tower::ServiceBuilder` the **first**
//! layer added is the **outermost**:
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_warden::{body_limit::BodyLimitLayer, client_ip::ClientIpLayer};
//!
//! # fn main() -> Result<(), tower_warden::ConfigError> {
//! let guards = ServiceBuilder::new()
//!     .layer(ClientIpLayer::new().try_trusted_proxies(["10.0.0.0/8"])?)
//!     .layer(BodyLimitLayer::new(1 << 20));
//! # let _ = guards;
//! # Ok(())
//! # }
//! ```
//!
//! axum's `Router::layer` is the other way round: each call wraps what is
//! already there, so the **last** `.layer(..)` is the outermost. Use
//! `route_layer` for checks that should not turn a 404 into a 403.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `ip-filter` | yes | `IpSet`, `IpFilterLayer` |
//! | `client-cert` | yes | `ClientCertLayer` |
//! | `body-limit` | yes | `BodyLimitLayer` (pulls in `http-body-util`) |
//! | `mcp` | yes | `mcp::HostOriginLayer`, `mcp::JsonRpcErrorsLayer`, `mcp::McpPolicyLayer`, `mcp::SessionBindingLayer` |
//! | `response-limit` | no | `mcp::ResponseLimitLayer` (with `mcp`; pulls in tokio's timer) |
//! | `schema-firewall` | no | `mcp::schema_firewall`: tool arguments and results checked against the tool's schemas (with `mcp`; pulls in `jsonschema`, without its network and file retrieval) |
//! | `tool-integrity` | no | `mcp::tool_integrity`: tool definitions pinned by digest, their changes, and a screen for hidden characters and phrases (with `mcp`; pulls in `sha2`) |
//! | `auth` | no | `auth::AuthLayer`, `JwtAuth`, `ApiKeys`, `RequireLayer` (with a backend below) |
//! | `aws-lc-rs` | no | JWT signatures through aws-lc-rs |
//! | `rust-crypto` | no | JWT signatures through RustCrypto instead |
//! | `jwks-url` | no | `auth::JwksUrl` (reqwest + rustls) |
//! | `introspection` | no | `auth::Introspection`: opaque access tokens checked at the authorization server (RFC 7662) |
//! | `token-exchange` | no | `auth::TokenExchange`: the caller's token exchanged for an upstream's (RFC 8693) |
//! | `otel` | no | `otel`: the request span the layers fill in, W3C trace context in and out, OTLP/HTTP export from the `OTEL_*` variables |
//! | `signature` | no | `signature::SignatureLayer`: HMAC-SHA256 signed webhooks |
//! | `circuit-breaker` | no | `circuit_breaker::CircuitBreaker`, `CircuitBreakerLayer`, `CircuitBreakers` |
//! | `namespace` | no | `namespace::NamespaceLayer`, `Namespace` |
//! | `rate-limit` | no | `rate_limit::RateLimitLayer`, `MemoryStore` (governor) |
//! | `redis` | no | `rate_limit::RedisStore`: quotas shared through Redis |
//! | `redis-tls` | no | `rediss://` to Redis (rustls), verified against the system's roots or `MCP_REDIS_CA_FILE` |
//! | `stack` | no | `stack::WardenLayer`: every layer a `WardenConfig` turns on, in one (with `ip-filter`, `client-cert`, `body-limit`, `mcp`, `auth`, `rate-limit`) |
//! | `config-file` | no | `MCP_CONFIG_FILE` (settings as TOML) and `serde::Deserialize` for `WardenConfig` |
//! | `metrics` | no | `metrics::MetricsLayer`, and counters, gauges and a histogram through the `metrics` facade |
//! | `axum` | no | the peer address from axum's `ConnectInfo<SocketAddr>` |
//! | `tonic` | no | the peer address from tonic's `TcpConnectInfo` |
//! | `full` | no | all of the above |
//!
//! Without `axum` or `tonic`, put the peer [`SocketAddr`](std::net::SocketAddr)
//! in the request extensions yourself.
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The docs link every layer and type, whatever the features; a build with
// some features off cannot resolve links to the items it leaves out. CI
// checks every link with all features (`cargo doc --all-features`, warnings
// denied).
#![cfg_attr(not(feature = "full"), allow(rustdoc::broken_intra_doc_links))]

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod __fuzz;
pub mod audit;
#[cfg(feature = "auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
pub mod auth;
pub mod body;
#[cfg(feature = "body-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "body-limit")))]
pub mod body_limit;
mod challenge;
mod cidr;
#[cfg(feature = "circuit-breaker")]
#[cfg_attr(docsrs, doc(cfg(feature = "circuit-breaker")))]
pub mod circuit_breaker;
#[cfg(feature = "client-cert")]
#[cfg_attr(docsrs, doc(cfg(feature = "client-cert")))]
pub mod client_cert;
pub mod client_ip;
pub mod config;
mod error;
pub mod guard;
#[cfg(feature = "ip-filter")]
#[cfg_attr(docsrs, doc(cfg(feature = "ip-filter")))]
pub mod ip_filter;
#[cfg(feature = "mcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "mcp")))]
pub mod mcp;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "namespace")]
#[cfg_attr(docsrs, doc(cfg(feature = "namespace")))]
pub mod namespace;
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
pub mod principal;
pub mod rate_limit;
pub mod reject;
pub mod reload;
mod replay;
#[cfg(feature = "signature")]
#[cfg_attr(docsrs, doc(cfg(feature = "signature")))]
pub mod signature;
#[cfg(feature = "stack")]
#[cfg_attr(docsrs, doc(cfg(feature = "stack")))]
pub mod stack;
mod telemetry;
#[cfg(test)]
mod testing;
pub mod tool_rules;
mod url_text;

pub use error::ConfigError;

/// A boxed, sendable future: what a decision that has to wait (a shared
/// rate-limit store, a JWKS fetch, a namespace lookup) hands back. Only such
/// decisions box; one made at once never does.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;
