//! Rate limiting: GCRA quotas per key, in memory or shared through Redis.
//!
//! (Work in progress: the store interface.)

mod store;

pub use store::{Check, Decision, Quota, RateKey, Store};
