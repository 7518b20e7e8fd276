//! Rate limiting: GCRA quotas per key, in memory or shared through Redis.
//!
//! (Work in progress.)

mod memory;
mod store;

pub use memory::{DEFAULT_MAX_KEYS, MemoryStore};
pub use store::{Check, Decision, Quota, RateKey, Store};
