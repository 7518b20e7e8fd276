//! Rate limiting: GCRA quotas per key, in memory or shared through Redis.
//!
//! (Work in progress: the store interface.)

#[cfg(feature = "redis")]
mod redis;
mod store;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{FailMode, RedisHealth, RedisStore};
pub use store::{Check, Decision, Quota, RateKey, Store};
