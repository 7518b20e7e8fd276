//! A bounded memory of messages already accepted, for the checks that
//! refuse a message sent twice: DPoP proofs (`auth`) and signed webhook
//! deliveries (`signature`).

#![cfg_attr(not(any(feature = "auth", feature = "signature")), allow(dead_code))]

use std::collections::HashMap;
use std::sync::Mutex;

/// How many shards the memory is split into (one lock each).
pub(crate) const SHARDS: usize = 16;

#[derive(Debug, Default)]
struct ReplayShard {
    /// Replay key → until when it is remembered.
    seen: HashMap<u128, u64>,
    /// The earliest expiry in `seen` (nothing can be dropped before it).
    next_expiry: u64,
}

/// What [`ReplayCache::record`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Not seen before, now remembered.
    Fresh,
    /// Seen before and still within its window.
    Replayed,
    /// Full of entries still within their window: the new one is refused
    /// (fail closed) rather than a remembered one forgotten.
    Full,
}

/// Messages seen recently (DPoP proofs, signed webhook deliveries), by a
/// 128-bit digest of what identifies each.
///
/// Bounded: `capacity` entries in 16 shards. Each entry is dropped once
/// its message's acceptance window has passed (then the message is refused
/// as too old anyway). A full shard first drops its expired entries (only
/// when one can have expired: the shard knows its earliest expiry, so a
/// full shard of live entries costs no sweep); if it is still full the new
/// message is refused, never a live entry evicted, which would let its
/// message be replayed.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    per_shard: usize,
    shards: Box<[Mutex<ReplayShard>]>,
}

impl ReplayCache {
    /// About `capacity` entries (at least one per shard).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            per_shard: capacity.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// Remembers `key` until `until` (seconds, like `now`), unless it was
    /// seen before and is still remembered.
    pub(crate) fn record(&self, key: u128, until: u64, now: u64) -> Recorded {
        let shard = &self.shards[(key % SHARDS as u128) as usize];
        let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&seen_until) = shard.seen.get(&key)
            && seen_until > now
        {
            return Recorded::Replayed;
        }
        if shard.seen.len() >= self.per_shard && !shard.seen.contains_key(&key) {
            if now < shard.next_expiry {
                return Recorded::Full;
            }
            shard.seen.retain(|_, until| *until > now);
            shard.next_expiry = shard.seen.values().copied().min().unwrap_or(u64::MAX);
            if shard.seen.len() >= self.per_shard {
                return Recorded::Full;
            }
        }
        if shard.seen.is_empty() {
            shard.next_expiry = until;
        } else {
            shard.next_expiry = shard.next_expiry.min(until);
        }
        shard.seen.insert(key, until);
        Recorded::Fresh
    }

    /// Whether `key` is remembered at `now` (without remembering it).
    #[cfg(feature = "introspection")]
    pub(crate) fn seen(&self, key: u128, now: u64) -> bool {
        let shard = &self.shards[(key % SHARDS as u128) as usize];
        let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
        shard.seen.get(&key).is_some_and(|&until| until > now)
    }

    /// Number of entries remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).seen.len())
            .sum()
    }
}
