//! What a verified token grants: its principal, and its confirmation claim
//! (`cnf`, RFC 7800) — what a sender-constrained token is bound to, read
//! once when the token is verified (and cached with it) and checked on
//! every request (RFC 9449 `jkt`, RFC 8705 `x5t#S256`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::principal::Principal;

/// A verified token: its principal and what it is bound to (`cnf`), which
/// the caller checks on every request, cached or not.
#[derive(Clone, Debug)]
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    pub(crate) cnf: Confirmation,
}

/// What a verified token says it is bound to (its `cnf` claim): the
/// SHA-256 thumbprint of a DPoP key, of a client certificate, or nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Confirmation {
    /// `cnf.jkt`: the RFC 7638 SHA-256 thumbprint of the proof key.
    pub(crate) jkt: Option<[u8; 32]>,
    /// `cnf.x5t#S256`: the SHA-256 of the client certificate (DER).
    pub(crate) x5t: Option<[u8; 32]>,
}

impl Confirmation {
    /// Not bound to anything: a plain bearer token.
    pub(crate) const NONE: Self = Self {
        jkt: None,
        x5t: None,
    };

    /// Reads the `cnf` claim. A `cnf` that is not an object, holds a
    /// malformed thumbprint, or names only confirmation methods this crate
    /// cannot check (`jwk`, `kid`, ...) is refused: a token bound to
    /// something unchecked must not pass as a bearer token.
    pub(crate) fn of_claims(claims: &Map<String, Value>) -> Result<Self, &'static str> {
        let Some(cnf) = claims.get("cnf") else {
            return Ok(Self::NONE);
        };
        let Some(cnf) = cnf.as_object() else {
            return Err("the token's confirmation (cnf) is not an object");
        };
        let thumbprint = |name: &str| -> Result<Option<[u8; 32]>, &'static str> {
            match cnf.get(name) {
                None => Ok(None),
                Some(value) => value
                    .as_str()
                    .and_then(decode_thumbprint)
                    .map(Some)
                    .ok_or("the token's confirmation (cnf) holds a malformed thumbprint"),
            }
        };
        let confirmation = Self {
            jkt: thumbprint("jkt")?,
            x5t: thumbprint("x5t#S256")?,
        };
        if confirmation == Self::NONE {
            return Err("the token is bound (cnf) by a method this server cannot check");
        }
        Ok(confirmation)
    }
}

/// A base64url SHA-256 digest (43 characters, no padding).
fn decode_thumbprint(text: &str) -> Option<[u8; 32]> {
    if text.len() != 43 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()
}
