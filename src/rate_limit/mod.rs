//! Rate limiting: GCRA quotas per key, in memory or shared through a
//! [`Store`].
//!
//! [`RateLimitLayer`] protects a service from callers that send too much:
//! each request is counted against a [`Quota`] for its key ([`KeyBy`]: the
//! client address, the principal, an API key, a namespace, an MCP tool, a
//! header, everyone, or your own rule). Excess requests get 429
//! `rate_limited` (gRPC `RESOURCE_EXHAUSTED`) with `Retry-After`, and the
//! inner service is not called. Admitted responses carry the IETF
//! `RateLimit-Policy` and `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers), and optionally the legacy
//! `X-RateLimit-*` ones.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_warden::rate_limit::{KeyBy, Quota, RateLimitLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut service = ServiceBuilder::new()
//!     .layer(RateLimitLayer::memory(Quota::per_minute(2)?, KeyBy::Global))
//!     .service_fn(|_: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     });
//! for expected in [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
//!     let response = service.ready().await?.call(Request::new(())).await?;
//!     assert_eq!(response.status(), expected);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Several layers stack: per IP before authentication, per principal after
//! it, per tool after the MCP peek. A request whose key cannot be found
//! passes uncounted (see [`KeyBy`]).
//!
//! # Caveats
//!
//! * [`KeyBy::client_ip`] is only as good as the client address: put
//!   [`ClientIpLayer`](crate::client_ip::ClientIpLayer) with your trusted
//!   proxies in front, or every caller behind a proxy shares one quota.
//! * [`MemoryStore`] counts per process; several instances need a shared
//!   store.

// Only `FailMode` and the defaults are compiled without the `rate-limit`
// feature: the settings name them in every build.
#[cfg(feature = "rate-limit")]
mod config;
mod defaults;
mod fail_mode;
#[cfg(feature = "rate-limit")]
mod key;
#[cfg(feature = "rate-limit")]
mod layer;
#[cfg(feature = "rate-limit")]
mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "rate-limit")]
mod service;
#[cfg(feature = "rate-limit")]
mod store;
#[cfg(all(test, feature = "rate-limit"))]
mod tests;

#[cfg(feature = "redis")]
pub(crate) use self::redis::{CA_SETTING, URL_SETTING};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisHealth, RedisStore, client as redis_client};
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use config::{RATELIMIT, RATELIMIT_POLICY};
pub use defaults::{DEFAULT_IPV6_PREFIX, DEFAULT_MAX_KEYS, DEFAULT_REDIS_PREFIX};
pub use fail_mode::FailMode;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use key::KeyBy;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use layer::RateLimitLayer;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use memory::MemoryStore;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use service::{RateLimit, ResponseFuture};
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use store::{Allowance, Quota, RateKey, Store};
