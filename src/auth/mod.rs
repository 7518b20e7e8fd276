//! Authentication and authorization: who is calling, and may they?
//!
//! [`AuthLayer`] turns a credential into a [`Principal`](crate::principal::Principal)
//! in the request extensions, or refuses the request with 401 and a
//! `WWW-Authenticate: Bearer` challenge:
//!
//! * JSON Web Tokens ([`JwtAuth`]) signed with HS256/384/512,
//!   RS256/384/512, PS256/384/512, ES256/384 or EdDSA, with keys from an
//!   HMAC secret, a PEM public key, a JWKS document or file, or a JWKS URL
//!   ([`JwksUrl`], feature `jwks-url`) refreshed in the background and
//!   refetched when a token names a new `kid`. The key pins the algorithm;
//!   the token never chooses it.
//! * API keys ([`ApiKeys`]) kept only as salted HMAC-SHA-256 digests.
//! * Sender-constrained tokens: `Authorization: DPoP <token>` with a
//!   `DPoP` proof (RFC 9449; [`AuthLayer::dpop`], `MCP_DPOP`), and tokens
//!   bound to a client certificate (`cnf.x5t#S256`, RFC 8705) checked
//!   against the certificate a trusted proxy passed on (RFC 9440
//!   `Client-Cert`, through
//!   [`ClientCertLayer::rfc9440`](crate::client_cert::ClientCertLayer::rfc9440)).
//!   A bound token is never accepted as a plain bearer token.
//!
//! [`RequireLayer`] then asks for scopes or roles (403
//! `insufficient_scope`).
//!
//! A connection that outlives its request (a WebSocket session) keeps
//! [`AuthLayer::credential_head`] of it and checks the credential again
//! with [`AuthLayer::authenticate`] — the same code, against the keys in
//! force then — so that a reload that removes a key also ends it.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use jsonwebtoken::Algorithm;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_warden::auth::{AuthLayer, JwtAuth};
//! use tower_warden::principal::Principal;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let jwt = JwtAuth::builder()
//!     .hmac_secret("a secret of at least thirty-two bytes!", Algorithm::HS256)
//!     .audience(["https://mcp.example.com/mcp"])
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(AuthLayer::jwt(jwt))
//!     .service_fn(|request: Request<String>| async move {
//!         let who = request.extensions().get::<Principal>().unwrap().subject().to_owned();
//!         Ok::<_, std::convert::Infallible>(Response::new(who))
//!     });
//!
//! // No credential: 401 with a Bearer challenge.
//! let response = service.oneshot(Request::new(String::new())).await?;
//! assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(response.headers()["www-authenticate"], "Bearer");
//! # Ok(())
//! # }
//! ```
//!
//! # Security notes
//!
//! * `alg: none`, an HS256 token "signed" with a public key, a token whose
//!   algorithm its key does not allow, a tampered payload, a wrong issuer or
//!   audience, an expired or not-yet-valid token and a token over 8 KiB are
//!   all refused before any claim is believed.
//! * Only successes are cached, keyed by a keyed digest of the whole token,
//!   never past the token's `exp`, nor past the removal of the key that
//!   verified it.
//! * No log line or error message ever holds a token, a key, a secret or a
//!   signature. Refusals go to the audit target `tower_warden::audit`.
//! * Put [`ClientIpLayer`](crate::client_ip::ClientIpLayer) in front so that audit
//!   events name the real client.
//! * A DPoP proof must name this request's method and URL (`htm`, `htu`),
//!   be at most 60 s old (5 s ahead), be signed by the key its token is
//!   bound to (`cnf.jkt`), carry the token's hash (`ath`) and be new:
//!   its `jti` is remembered (by key) for as long as the proof is
//!   acceptable, in a bounded cache that refuses new proofs (503) rather
//!   than forget live ones. Behind a proxy that rewrites `Host`, name the
//!   public origin with [`AuthLayer::try_dpop_origins`].
//! * The verified-token cache keeps each token's binding (`cnf`), and the
//!   binding is checked on every request, cache hit or not.
//!
//! # Signature backends
//!
//! `jsonwebtoken` checks signatures through aws-lc-rs (feature `aws-lc-rs`,
//! the faster; it builds C code) or the pure-Rust RustCrypto crates
//! (feature `rust-crypto`). Turn one on with `auth`; with both on, aws-lc-rs
//! is used.

mod api_key;
mod cache;
mod dpop;
#[cfg(feature = "token-exchange")]
mod exchange;
#[cfg(feature = "introspection")]
mod introspect;
#[cfg(feature = "jwks-url")]
mod jwks;
mod jwt;
mod keys;
mod layer;
#[cfg(any(feature = "introspection", feature = "token-exchange"))]
mod oauth;
mod require;
mod verified;

/// Whether DPoP-bound tokens are accepted or required (also
/// [`config::DpopMode`](crate::config::DpopMode)).
pub use crate::config::DpopMode;
pub use api_key::{ApiKeys, DIGEST_PREFIX, MAX_KEY_BYTES, MIN_SALT_BYTES};
pub use dpop::{
    DEFAULT_DPOP_FUTURE_SKEW, DEFAULT_DPOP_MAX_AGE, DEFAULT_DPOP_REPLAY_CAPACITY, DPOP,
    MAX_PROOF_BYTES,
};
#[cfg(feature = "token-exchange")]
#[cfg_attr(docsrs, doc(cfg(feature = "token-exchange")))]
pub use exchange::{
    ACCESS_TOKEN_TYPE, DEFAULT_REFRESH_MARGIN, ExchangeError, ExchangeTarget, ExchangedToken,
    TOKEN_EXCHANGE_GRANT, TokenExchange, TokenExchangeBuilder,
};
#[cfg(feature = "introspection")]
#[cfg_attr(docsrs, doc(cfg(feature = "introspection")))]
pub use introspect::{
    DEFAULT_INTROSPECTION_CACHE_TTL, Introspection, IntrospectionBuilder, IntrospectionClocked,
    IntrospectionFailMode,
};
#[cfg(feature = "jwks-url")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwks-url")))]
pub use jwks::JwksUrl;
pub use jwt::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES, JwtAuth, JwtAuthBuilder,
};
pub use keys::MIN_HMAC_SECRET_BYTES;
pub use layer::{AccessToken, Auth, AuthLayer, ResponseFuture, X_API_KEY};
#[cfg(any(feature = "introspection", feature = "token-exchange"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "introspection", feature = "token-exchange")))
)]
pub use oauth::ClientAuth;
pub use require::{Require, RequireLayer};

/// The JWT signature algorithms (re-exported from `jsonwebtoken`).
pub use jsonwebtoken::Algorithm;

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "tower-warden's `auth` feature needs a signature backend: enable `aws-lc-rs` or `rust-crypto`"
);

/// Selects `jsonwebtoken`'s signature backend for the process.
///
/// Only needed when both `aws-lc-rs` and `rust-crypto` are enabled *and*
/// you call `jsonwebtoken` yourself before building any [`JwtAuth`]; with
/// one backend, `jsonwebtoken` picks it on its own. Idempotent.
pub fn install_crypto_provider() {
    ensure_crypto_provider();
}

pub(crate) fn ensure_crypto_provider() {
    #[cfg(all(feature = "aws-lc-rs", feature = "rust-crypto"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // Fails only when a provider is already installed: fine.
            let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        });
    }
}

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::FromRequestParts;
    use http::request::Parts;

    use crate::body::ResponseBody;
    use crate::principal::Principal;
    use crate::reject::{self, Reason, Rejection};

    /// Without an auth layer in front there is no principal: 401.
    impl<S: Send + Sync> FromRequestParts<S> for Principal {
        type Rejection = http::Response<ResponseBody<axum::body::Body>>;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            if let Some(principal) = parts.extensions.get::<Principal>() {
                return Ok(principal.clone());
            }
            let request = http::Request::from_parts(parts.clone(), ());
            let response = reject::render(
                &reject::DefaultResponder,
                Rejection::new(Reason::Unauthenticated),
                &request,
            );
            Err(response.map(ResponseBody::rejection))
        }
    }
}

#[cfg(test)]
mod tests;
