//! API keys, held only as salted digests.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use crate::ConfigError;
use crate::principal::{AuthMethod, Principal};

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a stored digest: `hmac-sha256:<64 hex digits>`.
pub const DIGEST_PREFIX: &str = "hmac-sha256:";
/// The shortest salt accepted, in bytes.
pub const MIN_SALT_BYTES: usize = 16;
/// Longest API key accepted; longer values are refused before hashing.
pub const MAX_KEY_BYTES: usize = 512;

type Digest = [u8; 32];

/// The API keys a server accepts, each mapped to a [`Principal`].
///
/// Keys are never stored: each is kept as HMAC-SHA-256 under a server-side
/// salt, so a leaked key file or memory dump does not reveal a usable key,
/// and the salt alone does not either. A presented key is hashed the same
/// way and compared in constant time with the stored digests that share its
/// first eight bytes (the lookup index; an attacker who lacks the salt
/// cannot steer which digests those are).
///
/// The key file format ([`load_lines`](Self::load_lines)) is one JSON
/// object per line, as printed by the `keys` example:
///
/// ```text
/// {"id":"ci-bot","digest":"hmac-sha256:…","namespace":"acme","roles":["reader"],"scopes":["tools:*"]}
/// ```
///
/// Cloning is cheap and clones share the keys;
/// [`replace_with`](Self::replace_with) swaps them atomically (hot reload).
#[derive(Clone)]
pub struct ApiKeys {
    inner: Arc<Inner>,
}

struct Inner {
    salt: Box<[u8]>,
    table: RwLock<Arc<Table>>,
}

#[derive(Default)]
struct Table {
    by_prefix: HashMap<u64, Vec<(Digest, Principal)>>,
    len: usize,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

/// One line of an API key file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: String,
    digest: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

impl ApiKeys {
    /// An empty key set with this salt (at least 16 bytes; keep it secret,
    /// and keep it: the stored digests only match under the same salt).
    ///
    /// # Errors
    ///
    /// When the salt is shorter than 16 bytes.
    pub fn new(salt: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let salt = salt.as_ref();
        if salt.len() < MIN_SALT_BYTES {
            return Err(ConfigError::new(
                "api key salt",
                format!(
                    "the salt is {} bytes; at least {MIN_SALT_BYTES} are required",
                    salt.len()
                ),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                salt: salt.into(),
                table: RwLock::new(Arc::default()),
            }),
        })
    }

    /// The line to store for `key` under `salt`: `hmac-sha256:<hex>`.
    #[must_use]
    pub fn digest_of(salt: impl AsRef<[u8]>, key: &str) -> String {
        let digest = hmac(salt.as_ref(), key.as_bytes());
        let mut out = String::with_capacity(DIGEST_PREFIX.len() + 64);
        out.push_str(DIGEST_PREFIX);
        for b in digest {
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// Accepts `key` for `principal`. The key itself is hashed and dropped.
    ///
    /// # Errors
    ///
    /// An empty key, or one longer than 512 bytes.
    pub fn insert_key(&self, key: &str, principal: Principal) -> Result<(), ConfigError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(ConfigError::new(
                "api keys",
                "an API key must be between 1 and 512 bytes",
            ));
        }
        let digest = hmac(&self.inner.salt, key.as_bytes());
        self.update(|table| table.insert(digest, principal));
        Ok(())
    }

    /// Accepts the key whose stored digest is `digest`
    /// (`hmac-sha256:<hex>`, from [`digest_of`](Self::digest_of)).
    ///
    /// # Errors
    ///
    /// When `digest` is not in that form.
    pub fn insert_digest(&self, digest: &str, principal: Principal) -> Result<(), ConfigError> {
        let digest = parse_digest(digest)?;
        self.update(|table| table.insert(digest, principal));
        Ok(())
    }

    /// Adds every key of an API key file (see the type docs); blank lines and
    /// lines starting with `#` are skipped. Returns how many were added.
    ///
    /// # Errors
    ///
    /// The first bad line, by number; nothing is added then.
    pub fn load_lines(&self, text: &str) -> Result<usize, ConfigError> {
        let entries = parse_lines(text)?;
        let added = entries.len();
        self.update(|table| {
            for (digest, principal) in entries {
                table.insert(digest, principal);
            }
        });
        Ok(added)
    }

    /// Replaces every key with those of `text` (an API key file), atomically:
    /// requests see either the old set or the new one. On an error the old
    /// keys stay.
    ///
    /// # Errors
    ///
    /// As [`load_lines`](Self::load_lines).
    pub fn replace_with(&self, text: &str) -> Result<usize, ConfigError> {
        let entries = parse_lines(text)?;
        let mut table = Table::default();
        for (digest, principal) in entries {
            table.insert(digest, principal);
        }
        let added = table.len;
        *self.inner.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        Ok(added)
    }

    /// Replaces every key with those of `other` (built with the same salt),
    /// atomically: requests see either the old set or the new one. Build
    /// `other` from all your sources (listed keys and a key file), then swap
    /// it in: a hot reload that cannot leave a half-loaded set.
    ///
    /// # Errors
    ///
    /// When `other` has another salt (its digests would never match here);
    /// the old keys stay.
    pub fn replace_from(&self, other: &ApiKeys) -> Result<usize, ConfigError> {
        if self.inner.salt != other.inner.salt {
            return Err(ConfigError::new(
                "api key salt",
                "the new keys were made with another salt",
            ));
        }
        let table = other
            .inner
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let len = table.len;
        *self.inner.table.write().unwrap_or_else(|e| e.into_inner()) = table;
        Ok(len)
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len
    }

    /// Whether there are no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The principal of `key`, if it is one of ours.
    #[must_use]
    pub fn verify(&self, key: &str) -> Option<Principal> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return None;
        }
        let digest = hmac(&self.inner.salt, key.as_bytes());
        let table = self
            .inner
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut found = None;
        // Compare with every candidate, whichever matches.
        for (stored, principal) in table.by_prefix.get(&prefix(&digest))?.iter() {
            if constant_time_eq(stored, &digest) {
                found = Some(principal.clone());
            }
        }
        found
    }

    fn update(&self, f: impl FnOnce(&mut Table)) {
        let mut lock = self.inner.table.write().unwrap_or_else(|e| e.into_inner());
        let mut table = Table {
            by_prefix: lock.by_prefix.clone(),
            len: lock.len,
        };
        f(&mut table);
        *lock = Arc::new(table);
    }
}

impl Table {
    fn insert(&mut self, digest: Digest, principal: Principal) {
        let bucket = self.by_prefix.entry(prefix(&digest)).or_default();
        match bucket.iter_mut().find(|(d, _)| *d == digest) {
            Some(slot) => slot.1 = principal,
            None => {
                bucket.push((digest, principal));
                self.len += 1;
            }
        }
    }
}

fn parse_lines(text: &str) -> Result<Vec<(Digest, Principal)>, ConfigError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |m: String| ConfigError::new("api keys file", format!("line {}: {m}", n + 1));
        let entry: Line = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if entry.id.trim().is_empty() {
            return Err(bad("the id is empty".into()));
        }
        let digest = parse_digest(&entry.digest).map_err(|e| bad(e.message().to_owned()))?;
        let principal = Principal::builder(entry.id.clone(), AuthMethod::ApiKey)
            .key_id(entry.id)
            .maybe_namespace(entry.namespace)
            .roles(entry.roles)
            .scopes(entry.scopes)
            .build();
        out.push((digest, principal));
    }
    Ok(out)
}

fn parse_digest(text: &str) -> Result<Digest, ConfigError> {
    let bad = || {
        ConfigError::new(
            "api keys",
            format!("a stored key must read {DIGEST_PREFIX}<64 hex digits>"),
        )
    };
    let hex = text.trim().strip_prefix(DIGEST_PREFIX).ok_or_else(bad)?;
    crate::config::hex_array(hex).ok_or_else(bad)
}

fn hmac(salt: &[u8], key: &[u8]) -> Digest {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(salt).unwrap_or_else(|_| unreachable!());
    mac.update(key);
    mac.finalize().into_bytes().into()
}

fn prefix(digest: &Digest) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(b)
}

fn constant_time_eq(a: &Digest, b: &Digest) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &str = "0123456789abcdef-salt";

    fn keys() -> ApiKeys {
        ApiKeys::new(SALT).unwrap()
    }

    #[test]
    fn right_key_maps_to_its_principal_wrong_key_to_none() {
        let keys = keys();
        let p = Principal::builder("ci", AuthMethod::ApiKey)
            .key_id("ci")
            .build();
        keys.insert_key("sk-right-key-0001", p).unwrap();
        assert_eq!(keys.verify("sk-right-key-0001").unwrap().subject(), "ci");
        assert!(keys.verify("sk-right-key-0002").is_none());
        assert!(keys.verify("").is_none());
        assert!(keys.verify(&"x".repeat(10_000)).is_none());
    }

    #[test]
    fn file_lines_round_trip_through_digest_of() {
        let keys = keys();
        let line = format!(
            r#"{{"id":"bot","digest":"{}","namespace":"acme","roles":["reader"],"scopes":["tools:*"]}}"#,
            ApiKeys::digest_of(SALT, "sk-the-key")
        );
        let text = format!("# keys\n\n{line}\n");
        assert_eq!(keys.load_lines(&text).unwrap(), 1);
        let p = keys.verify("sk-the-key").unwrap();
        assert_eq!(p.subject(), "bot");
        assert_eq!(p.key_id(), Some("bot"));
        assert_eq!(p.namespace(), Some("acme"));
        assert!(p.has_scope("tools:echo"));
        assert!(p.has_role("reader"));
        assert_eq!(p.method(), AuthMethod::ApiKey);
    }

    #[test]
    fn a_different_salt_does_not_match() {
        let keys = keys();
        let digest = ApiKeys::digest_of("another-salt-of-16+bytes", "sk-the-key");
        keys.insert_digest(&digest, Principal::anonymous()).unwrap();
        assert!(keys.verify("sk-the-key").is_none());
    }

    #[test]
    fn bad_lines_are_named_and_change_nothing() {
        let keys = keys();
        let good = format!(
            r#"{{"id":"a","digest":"{}"}}"#,
            ApiKeys::digest_of(SALT, "k1")
        );
        let err = keys
            .load_lines(&format!("{good}\n{{\"id\":\"b\",\"digest\":\"md5:00\"}}\n"))
            .unwrap_err();
        assert!(err.message().contains("line 2"), "{err}");
        assert!(keys.is_empty());
        let err = keys.load_lines("not json").unwrap_err();
        assert!(err.message().contains("line 1"), "{err}");
    }

    #[test]
    fn replace_swaps_the_whole_set_and_keeps_it_on_error() {
        let keys = keys();
        keys.insert_key("old-key", Principal::anonymous()).unwrap();
        let line = format!(
            r#"{{"id":"n","digest":"{}"}}"#,
            ApiKeys::digest_of(SALT, "new-key")
        );
        assert!(keys.replace_with("garbage").is_err());
        assert!(keys.verify("old-key").is_some());
        assert_eq!(keys.replace_with(&line).unwrap(), 1);
        assert!(keys.verify("old-key").is_none());
        assert!(keys.verify("new-key").is_some());
    }

    #[test]
    fn short_salt_is_refused() {
        assert!(ApiKeys::new("short").is_err());
    }

    #[test]
    fn digest_text_never_contains_the_key() {
        let d = ApiKeys::digest_of(SALT, "sk-visible");
        assert!(d.starts_with(DIGEST_PREFIX));
        assert_eq!(d.len(), DIGEST_PREFIX.len() + 64);
        assert!(!d.contains("sk-visible"));
        assert!(format!("{:?}", keys()).contains("keys"));
    }
}
