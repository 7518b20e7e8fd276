//! Signing keys and the algorithms each one is pinned to.

use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::ConfigError;

/// Every key gets a process-unique id; the token cache remembers which key
/// verified each entry so that a rotation can drop the entries of removed
/// keys.
static NEXT_KEY_ID: AtomicU64 = AtomicU64::new(1);

fn next_key_id() -> u64 {
    NEXT_KEY_ID.fetch_add(1, Ordering::Relaxed)
}

/// One verification key.
pub(crate) struct Key {
    pub(crate) id: u64,
    pub(crate) kid: Option<Box<str>>,
    /// The algorithms a token signed with this key may name. Never mixes
    /// families: an HMAC key only accepts HS*, an RSA key only RS*/PS*.
    pub(crate) algorithms: Box<[Algorithm]>,
    pub(crate) decoding: DecodingKey,
    /// The JWK this key came from, to recognise it again after a refresh.
    source: Option<Jwk>,
}

impl Key {
    pub(crate) fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// The keys a verifier currently trusts.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    pub(crate) keys: Vec<Key>,
}

/// Every algorithm a key may be pinned to: HMAC, then RSA, then the curves.
pub(crate) const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
pub(crate) const HMAC_ALGORITHMS: &[Algorithm] = ALGORITHMS.split_at(3).0;
const RSA_ALGORITHMS: &[Algorithm] = ALGORITHMS.split_at(3).1.split_at(6).0;

/// The lowest HMAC secret length accepted by default, in bytes (RFC 7518
/// §3.2 asks for at least the hash output size; 32 bytes covers HS256).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

impl KeySet {
    pub(crate) fn hmac(secret: &[u8], algorithm: Algorithm) -> Result<Self, ConfigError> {
        if !HMAC_ALGORITHMS.contains(&algorithm) {
            return Err(ConfigError::new(
                "jwt algorithm",
                format!(
                    "{algorithm:?} is not an HMAC algorithm; an HMAC secret signs HS256, HS384 or HS512"
                ),
            ));
        }
        if secret.is_empty() {
            return Err(ConfigError::new("jwt secret", "the HMAC secret is empty"));
        }
        Ok(Self {
            keys: vec![Key {
                id: next_key_id(),
                kid: None,
                algorithms: Box::new([algorithm]),
                decoding: DecodingKey::from_secret(secret),
                source: None,
            }],
        })
    }

    pub(crate) fn pem(pem: &[u8], algorithm: Algorithm) -> Result<Self, ConfigError> {
        use Algorithm::*;
        let decoding = match algorithm {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(pem),
            ES256 | ES384 => DecodingKey::from_ec_pem(pem),
            EdDSA => DecodingKey::from_ed_pem(pem),
            HS256 | HS384 | HS512 => {
                return Err(ConfigError::new(
                    "jwt algorithm",
                    "a public key cannot verify HS* tokens; configure an HMAC secret instead",
                ));
            }
            other => {
                return Err(ConfigError::new(
                    "jwt algorithm",
                    format!("{other:?} is not supported"),
                ));
            }
        }
        .map_err(|e| {
            ConfigError::new(
                "jwt public key",
                format!("not a PEM public key for {algorithm:?}: {e}"),
            )
        })?;
        Ok(Self {
            keys: vec![Key {
                id: next_key_id(),
                kid: None,
                algorithms: Box::new([algorithm]),
                decoding,
                source: None,
            }],
        })
    }

    /// Parses a JWKS document. Keys meant for encryption, keys of unknown
    /// types and keys whose `alg` does not fit their type are skipped; a
    /// document with no usable key is an error. `previous` lends its key ids
    /// to keys that did not change, so cached tokens they verified survive a
    /// refresh.
    pub(crate) fn from_jwks_json(
        json: &[u8],
        previous: Option<&KeySet>,
    ) -> Result<(Self, usize), ConfigError> {
        let set: JwkSet = serde_json::from_slice(json)
            .map_err(|e| ConfigError::new("jwks", format!("not a JWKS document: {e}")))?;
        Self::from_jwks(&set, previous)
    }

    /// Parses a JWKS document fetched from a URL: published keys are
    /// public keys, so a document holding a shared secret (`oct`) is an
    /// error as a whole (whoever can read the URL could sign tokens).
    #[cfg(feature = "jwks-url")]
    pub(crate) fn from_remote_jwks_json(
        json: &[u8],
        previous: Option<&KeySet>,
    ) -> Result<(Self, usize), ConfigError> {
        let set: JwkSet = serde_json::from_slice(json)
            .map_err(|e| ConfigError::new("jwks url", format!("not a JWKS document: {e}")))?;
        if set
            .keys
            .iter()
            .any(|k| matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
        {
            return Err(ConfigError::new(
                "jwks url",
                "the JWKS holds a shared-secret (oct) key; a key set fetched from a URL must hold public keys only",
            ));
        }
        Self::from_jwks(&set, previous)
    }

    pub(crate) fn from_jwks(
        set: &JwkSet,
        previous: Option<&KeySet>,
    ) -> Result<(Self, usize), ConfigError> {
        let mut keys = Vec::with_capacity(set.keys.len());
        let mut skipped = 0;
        for jwk in &set.keys {
            let Some(algorithms) = jwk_algorithms(jwk) else {
                skipped += 1;
                continue;
            };
            let Ok(decoding) = DecodingKey::from_jwk(jwk) else {
                skipped += 1;
                continue;
            };
            let id = previous
                .and_then(|p| p.keys.iter().find(|k| k.source.as_ref() == Some(jwk)))
                .map_or_else(next_key_id, |k| k.id);
            keys.push(Key {
                id,
                kid: jwk.common.key_id.clone().map(String::into_boxed_str),
                algorithms,
                decoding,
                source: Some(jwk.clone()),
            });
        }
        if keys.is_empty() {
            return Err(ConfigError::new(
                "jwks",
                format!(
                    "the JWKS has no usable signing key ({} key(s) skipped)",
                    skipped
                ),
            ));
        }
        Ok((Self { keys }, skipped))
    }

    /// The key ids in this set.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().map(|k| k.id)
    }

    pub(crate) fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }
}

/// The algorithms a JWK may verify, or `None` when it cannot sign JWTs.
fn jwk_algorithms(jwk: &Jwk) -> Option<Box<[Algorithm]>> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGORITHMS,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return None,
        },
        // A shared secret is only trusted when the JWK pins its algorithm.
        AlgorithmParameters::OctetKey(_) => HMAC_ALGORITHMS,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        Some(named) => {
            let named = key_algorithm(named)?;
            family.contains(&named).then(|| Box::from([named]))
        }
        None if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) => None,
        None => Some(family.into()),
    }
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_never_mix() {
        use Algorithm::*;
        assert_eq!(HMAC_ALGORITHMS, [HS256, HS384, HS512]);
        assert_eq!(RSA_ALGORITHMS, [RS256, RS384, RS512, PS256, PS384, PS512]);
        // An RSA JWK without `alg` allows the RSA family only.
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"RSA","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#,
        )
        .unwrap();
        assert_eq!(jwk_algorithms(&jwk).as_deref(), Some(RSA_ALGORITHMS));
    }
}
