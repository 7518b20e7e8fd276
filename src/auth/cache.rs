//! The verified-token cache.
//!
//! * Keyed by a 128-bit SipHash-1-3 digest of the whole token under a
//!   random per-cache key: the tokens themselves are never stored, and
//!   nobody who lacks the key can make two tokens collide.
//! * Only successes are cached, so an attacker cannot fill it without valid
//!   tokens.
//! * An entry never outlives its token's `exp`.
//! * Bounded: `capacity` entries in 16 shards; a full shard first drops
//!   expired entries, then an arbitrary one.
//! * Each entry remembers the key that verified it; a key rotation drops the
//!   entries of keys that left the set. A rotation also starts a new
//!   generation, and a token verified under an older one (with keys read
//!   before the rotation) is not cached: a verification racing a key
//!   removal cannot put back an entry the removal dropped.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::principal::Principal;

const SHARDS: usize = 16;

/// The digest is already uniformly random: use its low bits as the hash.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

#[derive(Clone)]
struct Entry {
    principal: Principal,
    exp: u64,
    key_id: u64,
}

type Shard = RwLock<HashMap<u128, Entry, BuildHasherDefault<Identity>>>;

pub(crate) struct TokenCache {
    k0: u64,
    k1: u64,
    per_shard: usize,
    shards: Box<[Shard]>,
    /// Bumped by each key rotation, before its entries are dropped.
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &(self.per_shard * SHARDS))
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache of about `capacity` entries (0 switches caching off).
    pub(crate) fn new(capacity: usize) -> Self {
        let mut seed = [0u8; 16];
        // Without an OS random source the digest key would be guessable;
        // a zero-capacity cache is then the only safe cache.
        let per_shard = if getrandom::fill(&mut seed).is_ok() {
            capacity.div_ceil(SHARDS)
        } else {
            0
        };
        Self {
            k0: u64::from_le_bytes(seed[..8].try_into().unwrap_or_default()),
            k1: u64::from_le_bytes(seed[8..].try_into().unwrap_or_default()),
            per_shard,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            generation: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    pub(crate) fn digest(&self, token: &[u8]) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write(token);
        h.finish128().as_u128()
    }

    fn shard(&self, digest: u128) -> &Shard {
        &self.shards[(digest >> 124) as usize % SHARDS]
    }

    /// The principal of a cached token that is still valid at `now`.
    pub(crate) fn get(&self, digest: u128, now: u64) -> Option<Principal> {
        if !self.enabled() {
            return None;
        }
        let shard = self.shard(digest);
        let found = {
            let map = shard.read().unwrap_or_else(|e| e.into_inner());
            map.get(&digest)
                .map(|e| (e.exp > now).then(|| e.principal.clone()))
        };
        match found {
            Some(Some(principal)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::token_cache(true);
                Some(principal)
            }
            Some(None) => {
                shard
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&digest);
                self.misses.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::token_cache(false);
                None
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                crate::telemetry::token_cache(false);
                None
            }
        }
    }

    /// The current key generation: read it before reading the keys a
    /// token is verified with, and hand it to [`insert`](Self::insert).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers a verified token until `exp`, unless the keys rotated
    /// since `generation` was read (the key that verified it may be gone).
    pub(crate) fn insert(
        &self,
        digest: u128,
        principal: Principal,
        exp: u64,
        key_id: u64,
        now: u64,
        generation: u64,
    ) {
        if !self.enabled() || exp <= now {
            return;
        }
        let mut map = self
            .shard(digest)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // Checked under the shard lock: a rotation bumps the generation
        // before it takes this lock to drop entries, so either it sees this
        // entry and judges it, or this check sees the new generation.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if map.len() >= self.per_shard && !map.contains_key(&digest) {
            map.retain(|_, e| e.exp > now);
            if let Some(&victim) = map.keys().next().filter(|_| map.len() >= self.per_shard) {
                map.remove(&victim);
            }
        }
        map.insert(
            digest,
            Entry {
                principal,
                exp,
                key_id,
            },
        );
    }

    /// Starts a new generation, then drops every entry verified by a key
    /// not in `kept`.
    pub(crate) fn retain_keys(&self, kept: &[u64]) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in self.shards.iter() {
            shard
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, e| kept.contains(&e.key_id));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::AuthMethod;

    fn p(name: &str) -> Principal {
        Principal::builder(name, AuthMethod::Jwt).build()
    }

    #[test]
    fn entry_never_outlives_exp() {
        let cache = TokenCache::new(64);
        let d = cache.digest(b"a.b.c");
        cache.insert(d, p("alice"), 1_000, 1, 900, 0);
        assert_eq!(cache.get(d, 999).unwrap().subject(), "alice");
        assert!(cache.get(d, 1_000).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn expired_tokens_are_not_inserted() {
        let cache = TokenCache::new(64);
        let d = cache.digest(b"a.b.c");
        cache.insert(d, p("alice"), 1_000, 1, 1_000, 0);
        assert!(cache.get(d, 0).is_none());
    }

    #[test]
    fn bounded_in_entries() {
        let cache = TokenCache::new(64);
        for i in 0..10_000u32 {
            let d = cache.digest(&i.to_le_bytes());
            cache.insert(d, p("x"), u64::MAX, 1, 0, 0);
        }
        assert!(cache.len() <= 64, "{} entries", cache.len());
        assert!(cache.len() >= 48);
    }

    #[test]
    fn full_shards_drop_expired_entries_first() {
        let cache = TokenCache::new(SHARDS);
        // One slot per shard: fill it with a soon-expired entry, then insert
        // a long-lived one into the same shard.
        let stale = cache.digest(b"stale");
        cache.insert(stale, p("stale"), 10, 1, 0, 0);
        let mut other = 0u32;
        let fresh = loop {
            let d = cache.digest(&other.to_le_bytes());
            if d >> 124 == stale >> 124 {
                break d;
            }
            other += 1;
        };
        cache.insert(fresh, p("fresh"), 1_000, 1, 20, 0);
        assert!(cache.get(fresh, 30).is_some());
        assert!(cache.get(stale, 5).is_none());
    }

    #[test]
    fn rotation_drops_entries_of_removed_keys() {
        let cache = TokenCache::new(64);
        let a = cache.digest(b"signed-by-1");
        let b = cache.digest(b"signed-by-2");
        cache.insert(a, p("a"), 100, 1, 0, 0);
        cache.insert(b, p("b"), 100, 2, 0, 0);
        cache.retain_keys(&[2]);
        assert!(cache.get(a, 1).is_none());
        assert!(cache.get(b, 1).is_some());
    }

    #[test]
    fn a_verification_racing_a_rotation_is_not_cached() {
        let cache = TokenCache::new(64);
        let d = cache.digest(b"signed-by-1");
        // Keys read (generation taken), then key 1 removed, then the
        // verification with the old keys finishes.
        let before = cache.generation();
        cache.retain_keys(&[2]);
        cache.insert(d, p("a"), 100, 1, 0, before);
        assert!(
            cache.get(d, 1).is_none(),
            "a removed key's token was cached"
        );
        // Verified under the current generation: cached.
        cache.insert(d, p("a"), 100, 2, 0, cache.generation());
        assert!(cache.get(d, 1).is_some());
    }

    #[test]
    fn digests_depend_on_every_byte_and_on_the_cache_key() {
        let one = TokenCache::new(1);
        let two = TokenCache::new(1);
        assert_ne!(one.digest(b"a.b.c"), one.digest(b"a.b.d"));
        assert_ne!(one.digest(b"a.b.c"), two.digest(b"a.b.c"));
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = TokenCache::new(0);
        let d = cache.digest(b"t");
        cache.insert(d, p("a"), 100, 1, 0, 0);
        assert!(cache.get(d, 1).is_none());
    }
}
