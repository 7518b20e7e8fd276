//! The verified-token cache.
//!
//! * Indexed by a keyed 64-bit hash (foldhash, seeded from the OS random
//!   source) of the **whole token**; an entry also holds the token's
//!   signed part (`header.payload`, which is no credential without its
//!   signature) and length, and a hit needs both byte for byte. The
//!   signature is never stored, so the tokens themselves are not either. A
//!   hit therefore needs the very `header.payload` that was verified and a
//!   token whose keyed hash matches the verified one: a token altered
//!   anywhere (its signature included) is a guess at a secret-keyed 64-bit
//!   value per request; with the original, the caller holds the token
//!   anyway. One pass of a fast hash over the token, and `memcmp` of the
//!   signed part, cost a fraction of a cryptographic digest, and the
//!   lookup never searches the token for its last `.` (which cost more
//!   than the hash on a 600-byte RS256 token).
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

use std::hash::BuildHasher;
use std::sync::OnceLock;

use foldhash::SharedSeed;
use foldhash::quality::SeedableRandomState;

use super::verified::Verified;

const SHARDS: usize = 16;

/// The index is already a hash: use it as is.
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
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Clone)]
struct Entry {
    /// The token's `header.payload`, compared on every hit.
    signed: Box<str>,
    /// The whole token's length, compared on every hit.
    len: usize,
    /// The principal and the token's binding (`cnf`), which the caller
    /// checks on every hit.
    verified: Verified,
    exp: u64,
    key_id: u64,
}

type Shard = RwLock<HashMap<u64, Entry, BuildHasherDefault<Identity>>>;

/// A token as the cache sees it: the index (the keyed hash of the whole
/// token) and the token.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CacheKey<'a> {
    pub(crate) index: u64,
    token: &'a str,
}

pub(crate) struct TokenCache {
    hasher: SeedableRandomState,
    per_shard: usize,
    shards: Box<[Shard]>,
    /// Bumped by each key rotation, before its entries are dropped.
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    lookups: crate::telemetry::CacheLookups,
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
        // Without an OS random source the hash key would be guessable; a
        // zero-capacity cache is then the only safe cache.
        let (per_shard, seed) = match (random_u64(), shared_seed()) {
            (Some(seed), Some(_)) => (capacity.div_ceil(SHARDS), seed),
            _ => (0, 0),
        };
        let shared = shared_seed().unwrap_or_else(|| SharedSeed::global_fixed());
        Self {
            hasher: SeedableRandomState::with_seed(seed, shared),
            per_shard,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            generation: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            lookups: crate::telemetry::CacheLookups::default(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.per_shard > 0
    }

    /// The cache's view of `token`: the keyed hash of all of it.
    pub(crate) fn key<'a>(&self, token: &'a str) -> CacheKey<'a> {
        CacheKey {
            index: self.hasher.hash_one(token.as_bytes()),
            token,
        }
    }

    fn shard(&self, index: u64) -> &Shard {
        &self.shards[(index >> 60) as usize % SHARDS]
    }

    /// The principal (and binding) of a cached token that is still valid
    /// at `now`.
    pub(crate) fn get(&self, key: CacheKey<'_>, now: u64) -> Option<Verified> {
        if !self.enabled() {
            return None;
        }
        let shard = self.shard(key.index);
        let found = {
            let map = shard.read().unwrap_or_else(|e| e.into_inner());
            map.get(&key.index)
                .filter(|e| {
                    e.len == key.token.len()
                        && key.token.as_bytes().starts_with(e.signed.as_bytes())
                })
                .map(|e| (e.exp > now).then(|| e.verified.clone()))
        };
        match found {
            Some(Some(verified)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                self.lookups.record(true);
                Some(verified)
            }
            Some(None) => {
                shard
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key.index);
                self.misses.fetch_add(1, Ordering::Relaxed);
                self.lookups.record(false);
                None
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                self.lookups.record(false);
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
        key: CacheKey<'_>,
        verified: Verified,
        exp: u64,
        key_id: u64,
        now: u64,
        generation: u64,
    ) {
        if !self.enabled() || exp <= now {
            return;
        }
        let mut map = self
            .shard(key.index)
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // Checked under the shard lock: a rotation bumps the generation
        // before it takes this lock to drop entries, so either it sees this
        // entry and judges it, or this check sees the new generation.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if map.len() >= self.per_shard && !map.contains_key(&key.index) {
            map.retain(|_, e| e.exp > now);
            if let Some(&victim) = map.keys().next().filter(|_| map.len() >= self.per_shard) {
                map.remove(&victim);
            }
        }
        map.insert(
            key.index,
            Entry {
                signed: key
                    .token
                    .rsplit_once('.')
                    .map_or(key.token, |(signed, _)| signed)
                    .into(),
                len: key.token.len(),
                verified,
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

/// Eight bytes from the OS random source.
fn random_u64() -> Option<u64> {
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).ok()?;
    Some(u64::from_le_bytes(seed))
}

/// The seed every cache of the process shares, from the OS random source
/// (each cache adds its own per-cache seed).
fn shared_seed() -> Option<&'static SharedSeed> {
    static SEED: OnceLock<Option<SharedSeed>> = OnceLock::new();
    SEED.get_or_init(|| random_u64().map(SharedSeed::from_u64))
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::verified::Confirmation;
    use crate::principal::{AuthMethod, Principal};

    fn p(name: &str) -> Verified {
        Verified {
            principal: Principal::builder(name, AuthMethod::Jwt).build(),
            cnf: Confirmation::NONE,
        }
    }

    #[test]
    fn a_hit_keeps_the_binding_of_the_token() {
        let cache = TokenCache::new(64);
        let d = cache.key("a.b.c");
        let bound = Verified {
            cnf: Confirmation {
                jkt: Some([7; 32]),
                x5t: None,
            },
            ..p("alice")
        };
        cache.insert(d, bound, 1_000, 1, 900, 0);
        assert_eq!(cache.get(d, 950).unwrap().cnf.jkt, Some([7; 32]));
    }

    #[test]
    fn entry_never_outlives_exp() {
        let cache = TokenCache::new(64);
        let d = cache.key("a.b.c");
        cache.insert(d, p("alice"), 1_000, 1, 900, 0);
        assert_eq!(cache.get(d, 999).unwrap().principal.subject(), "alice");
        assert!(cache.get(d, 1_000).is_none());
        assert_eq!(cache.len(), 0, "an expired entry is dropped when seen");
    }

    #[test]
    fn expired_tokens_are_not_inserted() {
        let cache = TokenCache::new(64);
        let d = cache.key("a.b.c");
        cache.insert(d, p("alice"), 1_000, 1, 1_000, 0);
        assert!(cache.get(d, 0).is_none());
    }

    #[test]
    fn bounded_in_entries() {
        let cache = TokenCache::new(64);
        for i in 0..10_000u32 {
            let token = format!("h.p.{i}");
            cache.insert(cache.key(&token), p("x"), u64::MAX, 1, 0, 0);
        }
        assert!(cache.len() <= 64, "{} entries", cache.len());
        assert!(cache.len() >= 48);
    }

    #[test]
    fn full_shards_drop_expired_entries_first() {
        let cache = TokenCache::new(SHARDS);
        // One slot per shard: fill it with a soon-expired entry, then insert
        // a long-lived one into the same shard.
        let stale = cache.key("h.p.stale");
        cache.insert(stale, p("stale"), 10, 1, 0, 0);
        let mut other = 0u32;
        let token = loop {
            let token = format!("h.p.{other}");
            if cache.key(&token).index >> 60 == stale.index >> 60 {
                break token;
            }
            other += 1;
        };
        let fresh = cache.key(&token);
        cache.insert(fresh, p("fresh"), 1_000, 1, 20, 0);
        assert!(cache.get(fresh, 30).is_some());
        assert!(cache.get(stale, 5).is_none());
    }

    #[test]
    fn rotation_drops_entries_of_removed_keys() {
        let cache = TokenCache::new(64);
        let a = cache.key("h.p.signed-by-1");
        let b = cache.key("h.p.signed-by-2");
        cache.insert(a, p("a"), 100, 1, 0, 0);
        cache.insert(b, p("b"), 100, 2, 0, 0);
        cache.retain_keys(&[2]);
        assert!(cache.get(a, 1).is_none());
        assert!(cache.get(b, 1).is_some());
    }

    #[test]
    fn a_verification_racing_a_rotation_is_not_cached() {
        let cache = TokenCache::new(64);
        let d = cache.key("h.p.signed-by-1");
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
    fn a_hit_needs_the_same_signed_part_and_signature() {
        let cache = TokenCache::new(64);
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        cache.insert(cache.key(token), p("alice"), 100, 1, 0, 0);
        assert!(cache.get(cache.key(token), 1).is_some());
        // The signature moved onto another payload, header or none.
        for forged in [
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
            "eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
            "c2lnbmF0dXJl",
            ".c2lnbmF0dXJl",
            // One character of the signature changed, or cut, or extended.
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJm",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJ",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlAA",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.",
        ] {
            assert!(cache.get(cache.key(forged), 1).is_none(), "{forged}");
        }
    }

    #[test]
    fn indexes_depend_on_every_byte_and_on_the_cache_key() {
        let one = TokenCache::new(1);
        let two = TokenCache::new(1);
        let token = format!("h.p.{}", "s".repeat(342));
        let base = one.key(&token).index;
        for at in 0..token.len() {
            let mut other = token.clone().into_bytes();
            other[at] = if other[at] == b't' { b'u' } else { b't' };
            let other = String::from_utf8(other).unwrap();
            assert_ne!(one.key(&other).index, base, "byte {at}");
        }
        assert_ne!(one.key("a.b.c").index, two.key("a.b.c").index);
    }

    #[test]
    fn zero_capacity_disables() {
        let cache = TokenCache::new(0);
        let d = cache.key("t");
        cache.insert(d, p("a"), 100, 1, 0, 0);
        assert!(cache.get(d, 1).is_none());
    }
}
