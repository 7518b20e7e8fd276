//! Sender-constrained access tokens: DPoP proofs (RFC 9449) and the
//! confirmation (`cnf`) claim of bound tokens (RFC 7800, RFC 8705).
//!
//! A bound token is no credential on its own: it names the key (`cnf.jkt`,
//! the RFC 7638 thumbprint of a public key) or the client certificate
//! (`cnf.x5t#S256`) that must come with it. This file checks the proof of
//! possession that comes with a request, reads the confirmation of a
//! verified token, and remembers the proofs it has seen.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, Uri};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jwt::Failure;
use crate::ConfigError;
use crate::reject::Reason;
use crate::replay::Recorded;
pub(crate) use crate::replay::ReplayCache;

/// The `DPoP` request header.
pub const DPOP: http::HeaderName = http::HeaderName::from_static("dpop");

/// Longest accepted proof, checked before any parsing (8 KiB).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Default allowance for a proof's `iat` in the past: a proof older than
/// this is refused, and its `jti` is remembered this long.
pub const DEFAULT_DPOP_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);
/// Default allowance for a proof's `iat` in the future (client clocks
/// running ahead).
pub const DEFAULT_DPOP_FUTURE_SKEW: std::time::Duration = std::time::Duration::from_secs(5);
/// Default number of recent proofs remembered to refuse replays.
pub const DEFAULT_DPOP_REPLAY_CAPACITY: usize = 100_000;

/// The signature algorithms a proof may use: asymmetric only (RFC 9449
/// §4.3: never `none`, never a MAC), and those this crate verifies.
pub(crate) const PROOF_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// The `algs` of the `DPoP` challenge, from [`PROOF_ALGORITHMS`].
pub(crate) const PROOF_ALGS: &str = "ES256 ES384 EdDSA RS256 RS384 RS512 PS256 PS384 PS512";

/// JWK members that only a private (or secret) key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// base64url(SHA-256(`bytes`)), without padding.
pub(crate) fn sha256_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// The RFC 7638 thumbprint of a public JWK: SHA-256 of its required
/// members, in lexical order, as compact JSON.
fn thumbprint(jwk: &Map<String, Value>) -> Result<[u8; 32], &'static str> {
    let member = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .ok_or("the proof's jwk lacks a member of its key type")
    };
    let kty = member("kty")?;
    let members: &[&str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        _ => return Err("the proof's jwk is not an EC, RSA or OKP public key"),
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        // Names and values are JSON strings; serde_json escapes them.
        canonical.push_str(&Value::from(*name).to_string());
        canonical.push(':');
        canonical.push_str(&Value::from(member(name)?).to_string());
    }
    canonical.push('}');
    Ok(Sha256::digest(canonical.as_bytes()).into())
}

/// Whether `alg` fits the key type (and curve) of `jwk`.
fn alg_fits(alg: Algorithm, jwk: &Map<String, Value>) -> bool {
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    match alg {
        Algorithm::ES256 => kty == Some("EC") && crv == Some("P-256"),
        Algorithm::ES384 => kty == Some("EC") && crv == Some("P-384"),
        Algorithm::EdDSA => kty == Some("OKP") && crv == Some("Ed25519"),
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => kty == Some("RSA"),
        _ => false,
    }
}

/// The request a proof must be made for.
#[derive(Debug)]
pub(crate) struct Target<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    /// The origins the server is reached at, when configured; otherwise
    /// the request's own (its absolute URI, or its `Host`).
    pub(crate) origins: &'a [Origin],
}

/// A verified proof: the thumbprint of its key, and what the replay cache
/// remembers of it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Proof {
    pub(crate) jkt: [u8; 32],
    /// SHA-256 of the key thumbprint and `jti`, truncated.
    pub(crate) replay_key: u128,
    /// Until when the proof would be accepted: remembered until then.
    pub(crate) remember_until: u64,
}

/// The freshness rules of proofs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Window {
    pub(crate) max_age: u64,
    pub(crate) future_skew: u64,
}

fn refuse(detail: &'static str) -> Failure {
    Failure::proof(detail)
}

/// Checks a DPoP proof for `token` and the request `target` at `now`
/// (RFC 9449 §4.3), except its `jti` against replays (recorded only once
/// the token is admitted) and the token's binding to its key.
pub(crate) fn verify_proof(
    proof: &str,
    token: &str,
    target: &Target<'_>,
    window: Window,
    now: u64,
) -> Result<Proof, Failure> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(refuse("the DPoP proof is too large"));
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refuse("the DPoP proof is not a signed JWT"));
    };
    let header: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| refuse("the DPoP proof's header is malformed"))?;
    if !header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(refuse("the DPoP proof's typ is not dpop+jwt"));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<Algorithm>().ok())
        .filter(|a| PROOF_ALGORITHMS.contains(a))
        .ok_or_else(|| refuse("the DPoP proof's algorithm is not an accepted asymmetric one"))?;
    if header.contains_key("crit") {
        return Err(refuse(
            "the DPoP proof names critical header extensions (crit) this server does not support",
        ));
    }
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or_else(|| refuse("the DPoP proof has no public key (jwk) in its header"))?;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(refuse("the DPoP proof's jwk holds a private key"));
    }
    let jkt = thumbprint(jwk).map_err(refuse)?;
    if !alg_fits(alg, jwk) {
        return Err(refuse("the DPoP proof's algorithm does not fit its key"));
    }
    let key = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(Value::Object(jwk.clone()))
        .ok()
        .and_then(|jwk| DecodingKey::from_jwk(&jwk).ok())
        .ok_or_else(|| refuse("the DPoP proof's jwk is not a usable public key"))?;
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Map<String, Value>>(proof, &key, &validation)
        .map_err(|_| refuse("the DPoP proof's signature is not valid"))?
        .claims;

    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| refuse("the DPoP proof has no jti"))?;
    if claims.get("htm").and_then(Value::as_str) != Some(target.method.as_str()) {
        return Err(refuse("the DPoP proof was made for another method (htm)"));
    }
    let htu = claims
        .get("htu")
        .and_then(Value::as_str)
        .and_then(HttpUri::parse)
        .ok_or_else(|| refuse("the DPoP proof's htu is not an http(s) URI"))?;
    if !htu.matches(target) {
        return Err(refuse("the DPoP proof was made for another URI (htu)"));
    }
    let iat = claims
        .get("iat")
        .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f as u64)))
        .ok_or_else(|| refuse("the DPoP proof's iat is not a number"))?;
    if iat.saturating_add(window.max_age) < now {
        return Err(refuse("the DPoP proof is too old (iat)"));
    }
    if iat > now.saturating_add(window.future_skew) {
        return Err(refuse("the DPoP proof is from the future (iat)"));
    }
    let ath = claims
        .get("ath")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("the DPoP proof has no access token hash (ath)"))?;
    if ath != sha256_b64(token.as_bytes()) {
        return Err(refuse(
            "the DPoP proof was made for another access token (ath)",
        ));
    }
    let mut hasher = Sha256::new();
    hasher.update(jkt);
    hasher.update(jti.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    Ok(Proof {
        jkt,
        replay_key: u128::from_le_bytes(first),
        remember_until: iat.saturating_add(window.max_age).saturating_add(1),
    })
}

/// An origin the server is reached at (`https://mcp.example.com`), for
/// the `htu` of proofs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    /// `None`: either scheme (an origin read from a `Host` header).
    https: Option<bool>,
    host: String,
    /// `None`: the scheme's default.
    port: Option<u16>,
}

impl Origin {
    /// The origin of an absolute `http(s)` URL.
    pub(crate) fn parse(setting: &'static str, url: &str) -> Result<Self, ConfigError> {
        let uri = HttpUri::parse(url).ok_or_else(|| {
            ConfigError::new(setting, format!("`{url}` is not an absolute http(s) URL"))
        })?;
        Ok(Self {
            https: Some(uri.https),
            host: uri.host,
            port: Some(uri.port),
        })
    }

    /// The origin of a request: its absolute URI, else its `Host` header.
    fn of_request(uri: &Uri, headers: &HeaderMap) -> Option<Self> {
        if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
            let https = scheme.eq_ignore_ascii_case("https");
            if !https && !scheme.eq_ignore_ascii_case("http") {
                return None;
            }
            return Some(Self {
                https: Some(https),
                host: authority.host().to_ascii_lowercase(),
                port: Some(authority.port_u16().unwrap_or(if https { 443 } else { 80 })),
            });
        }
        let mut hosts = headers.get_all(http::header::HOST).iter();
        let (Some(host), None) = (hosts.next(), hosts.next()) else {
            return None;
        };
        let authority: http::uri::Authority = host.to_str().ok()?.parse().ok()?;
        Some(Self {
            https: None,
            host: authority.host().to_ascii_lowercase(),
            port: authority.port_u16(),
        })
    }

    fn admits(&self, htu: &HttpUri) -> bool {
        if self.host != htu.host || self.https.is_some_and(|https| https != htu.https) {
            return false;
        }
        let default = if htu.https { 443 } else { 80 };
        self.port.unwrap_or(default) == htu.port
    }
}

/// An `http(s)` URI reduced to what RFC 9449 §4.3 compares: scheme and
/// host in lower case, the port made explicit, the path with its
/// percent-encoding normalised (RFC 3986 §6.2.2), no query or fragment.
#[derive(Debug, PartialEq, Eq)]
struct HttpUri {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

impl HttpUri {
    fn parse(text: &str) -> Option<Self> {
        let text = text.split(['#', '?']).next().unwrap_or_default();
        let (scheme, rest) = text.split_once("://")?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return None;
        };
        let (authority, path) = rest.find('/').map_or((rest, "/"), |at| rest.split_at(at));
        if authority.contains('@') || authority.is_empty() {
            return None;
        }
        let authority: http::uri::Authority = authority.parse().ok()?;
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        Some(Self {
            https,
            host,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: normalize_path(path)?,
        })
    }

    fn matches(&self, target: &Target<'_>) -> bool {
        let origin_ok = if target.origins.is_empty() {
            Origin::of_request(target.uri, target.headers).is_some_and(|o| o.admits(self))
        } else {
            target.origins.iter().any(|o| o.admits(self))
        };
        origin_ok && normalize_path(target.uri.path()).is_some_and(|path| path == self.path)
    }
}

/// `path` with each percent-encoded unreserved character decoded and every
/// other escape in upper case; `/` when empty. `None` when an escape is
/// malformed.
fn normalize_path(path: &str) -> Option<String> {
    if path.is_empty() {
        return Some("/".to_owned());
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(char::from(byte));
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            out.push(char::from(bytes[i]));
            i += 1;
        }
    }
    Some(out)
}

/// The refusal of a proof the replay cache would not take.
pub(crate) fn replay_refusal(recorded: Recorded) -> Option<Failure> {
    match recorded {
        Recorded::Fresh => None,
        Recorded::Replayed => Some(refuse("the DPoP proof was used before (jti)")),
        Recorded::Full => Some(Failure::new(
            Reason::AuthUnavailable,
            "too many recent DPoP proofs to check this one for replay; retry shortly",
            None,
        )),
    }
}

#[cfg(test)]
mod tests;
