//! What the perimeter benchmark (`benches/perimeter.rs`) and the HTTP load
//! server (`src/bin/hello.rs`) share: the bare inner service, the
//! credentials, the 100,000-prefix allow list, and the two `WardenLayer`
//! configurations measured beside the peer crates.
//!
//! * [`warden_defaults`] (A): the reference server's defaults with an HS256
//!   secret; only the quotas are raised so that nothing is refused.
//! * [`warden_full`] (B): everything a deployment behind a proxy turns on —
//!   the client address from `X-Forwarded-For` of a trusted proxy, a
//!   100,000-prefix allow list, RS256 tokens (verified once, then cached)
//!   with issuer and audience checked, per-address and per-principal rate
//!   limits, a body cap and a `Host` rule, under production rules.
//!
//! The keys under `keys/` were made for these benchmarks only (see
//! `keys/README.md`); nothing else may trust them.

use std::collections::HashSet;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use governor::middleware::StateInformationMiddleware;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Service, service_fn};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::PeerIpKeyExtractor;
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};
use tower_warden::auth::{Algorithm, JwtAuth};
use tower_warden::config::WardenConfig;
use tower_warden::stack::WardenLayer;

/// The HMAC secret of the HS256 tokens (at least 32 bytes).
pub const SECRET: &str = "a benchmark secret of at least thirty-two bytes, for HS256";
/// The `iss` of every token.
pub const ISSUER: &str = "https://auth.example.com/";
/// The `aud` of every token.
pub const AUDIENCE: &str = "https://mcp.example.com/mcp";
/// The `Host` every request names, and the one host configuration B serves.
pub const HOST_NAME: &str = "localhost";
/// The client behind the proxy: the last `X-Forwarded-For` entry.
pub const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
/// The `X-Forwarded-For` chain a trusted proxy sends: whatever the client
/// wrote, then the address the proxy saw ([`CLIENT`]).
pub const FORWARDED_FOR: &str = "192.0.2.44, 198.51.100.7";
/// The proxy, as the peer of the criterion requests.
pub const PROXY: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 40000);
/// The proxies B trusts in the criterion bench.
pub const PROXY_NET: &str = "10.0.0.0/8";
/// The body of every request: a JSON-RPC ping.
pub const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
/// The rate-limit quota of every limiter: far more than a benchmark sends,
/// so that nothing is refused and the admitted path is what is measured.
pub const HUGE_RPM: u32 = 1_000_000_000;
/// The size of the allow list.
pub const ALLOW_LIST_LEN: usize = 100_000;
/// The largest body the body caps admit.
pub const MAX_BODY: u64 = 1 << 20;

/// A JWT signing algorithm of the per-algorithm cases, with its test key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    /// HMAC with SHA-256 over [`SECRET`].
    Hs256,
    /// RSA 2048 PKCS#1 v1.5 with SHA-256.
    Rs256,
    /// ECDSA on P-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// Every algorithm, in the order the cases are measured.
    pub const ALL: [Self; 4] = [Self::Hs256, Self::Rs256, Self::Es256, Self::EdDsa];

    /// The JOSE name: `HS256`, `RS256`, `ES256`, `EdDSA`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// tower-warden's (jsonwebtoken's) algorithm.
    #[must_use]
    pub fn algorithm(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }

    /// The public key (PEM), `None` for HMAC.
    #[must_use]
    pub fn public_pem(self) -> Option<&'static str> {
        match self {
            Self::Hs256 => None,
            Self::Rs256 => Some(RSA_PUBLIC),
            Self::Es256 => Some(include_str!("../keys/ec256.pub.pem")),
            Self::EdDsa => Some(include_str!("../keys/ed25519.pub.pem")),
        }
    }

    fn encoding_key(self) -> jsonwebtoken::EncodingKey {
        use jsonwebtoken::EncodingKey;
        let key = match self {
            Self::Hs256 => Ok(EncodingKey::from_secret(SECRET.as_bytes())),
            Self::Rs256 => EncodingKey::from_rsa_pem(include_bytes!("../keys/rsa.pem")),
            Self::Es256 => EncodingKey::from_ec_pem(include_bytes!("../keys/ec256.pem")),
            Self::EdDsa => EncodingKey::from_ed_pem(include_bytes!("../keys/ed25519.pem")),
        };
        key.expect("the test keys are valid PEM")
    }

    /// A token for `alice` with every scope, [`ISSUER`] and [`AUDIENCE`],
    /// valid until 2096.
    #[must_use]
    pub fn token(self) -> String {
        tower_warden::auth::install_crypto_provider();
        let claims = serde_json::json!({
            "sub": "alice",
            "scope": "*",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "exp": 4_000_000_000u64,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(self.algorithm()),
            &claims,
            &self.encoding_key(),
        )
        .expect("a token can be signed")
    }

    /// tower-warden's verifier for these tokens: issuer and audience
    /// checked, verified tokens cached (the default).
    ///
    /// # Panics
    ///
    /// If the verifier cannot be built (it can: the keys are fixed).
    #[must_use]
    pub fn jwt_auth(self) -> JwtAuth {
        let builder = JwtAuth::builder();
        let builder = match self.public_pem() {
            None => builder.hmac_secret(SECRET, self.algorithm()),
            Some(pem) => builder.public_key_pem(pem, self.algorithm()),
        };
        builder
            .issuer([ISSUER])
            .audience([AUDIENCE])
            .build()
            .expect("the verifier builds")
    }
}

/// The RSA public key (PEM) of the RS256 tokens.
pub const RSA_PUBLIC: &str = include_str!("../keys/rsa.pub.pem");

/// The path of [`RSA_PUBLIC`], for `MCP_JWT_PUBLIC_KEY_FILE`.
pub const RSA_PUBLIC_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/keys/rsa.pub.pem");

/// `Bearer <token>` as a header value.
///
/// # Panics
///
/// Never for a JWT (base64url and dots).
#[must_use]
pub fn bearer(token: &str) -> HeaderValue {
    HeaderValue::try_from(format!("Bearer {token}")).expect("a JWT is a valid header value")
}

/// The request of every criterion case: `POST /mcp` with a JSON-RPC ping,
/// `Host`, the bearer token and the proxy's `X-Forwarded-For`, from `peer`
/// (both as a `SocketAddr` extension and as axum's `ConnectInfo`, so every
/// layer finds it where it looks).
///
/// # Panics
///
/// Never: every part is valid.
#[must_use]
pub fn request(peer: SocketAddr, bearer: &HeaderValue) -> Request<Full<Bytes>> {
    let mut request = Request::post("/mcp")
        .header(HOST, HeaderValue::from_static(HOST_NAME))
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(CONTENT_LENGTH, HeaderValue::from(BODY.len()))
        .header(AUTHORIZATION, bearer.clone())
        .header("x-forwarded-for", HeaderValue::from_static(FORWARDED_FOR))
        .body(Full::new(Bytes::from_static(BODY)))
        .expect("a valid request");
    let extensions = request.extensions_mut();
    extensions.insert(peer);
    extensions.insert(axum::extract::ConnectInfo(peer));
    request
}

/// The service every case wraps: answers at once with an empty `R`.
pub fn bare<B, R: Default>()
-> impl Service<Request<B>, Response = Response<R>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync {
    service_fn(|_: Request<B>| async { Ok::<_, Infallible>(Response::new(R::default())) })
}

/// A small deterministic generator (xorshift64*), so that every run
/// measures the same list.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// [`ALLOW_LIST_LEN`] distinct prefixes shaped like real lists: seven in ten
/// IPv4 (hosts, /24s, /16–/31), three in ten IPv6 in 2000::/3 (hosts, /64s,
/// /48s, /32–/127), and [`CLIENT`]'s /24.
#[must_use]
pub fn allow_list() -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen = HashSet::with_capacity(ALLOW_LIST_LEN);
    let mut list = Vec::with_capacity(ALLOW_LIST_LEN);
    let client = "198.51.100.0/24".to_owned();
    seen.insert(client.clone());
    list.push(client);
    while list.len() < ALLOW_LIST_LEN {
        let net = if rng.below(10) < 7 {
            let len = match rng.below(10) {
                0..=3 => 32,
                4..=6 => 24,
                _ => 16 + rng.below(16),
            };
            let bits = (rng.next() >> 32) as u32;
            let mask = u32::MAX.checked_shl(32 - len as u32).unwrap_or(0);
            format!("{}/{len}", Ipv4Addr::from(bits & mask))
        } else {
            let len = match rng.below(10) {
                0..=2 => 128,
                3..=5 => 64,
                6 | 7 => 48,
                _ => 32 + rng.below(96),
            };
            let bits = (u128::from(rng.next()) << 64 | u128::from(rng.next())) >> 3
                | 0x2000_0000_0000_0000_0000_0000_0000_0000;
            let mask = u128::MAX.checked_shl(128 - len as u32).unwrap_or(0);
            format!("{}/{len}", Ipv6Addr::from(bits & mask))
        };
        if seen.insert(net.clone()) {
            list.push(net);
        }
    }
    list
}

/// Configuration A: the reference server's defaults, an HS256 secret, and
/// quotas nobody reaches.
///
/// # Panics
///
/// If the settings are refused (they are fixed and valid).
pub fn warden_defaults() -> WardenLayer {
    let rpm = HUGE_RPM.to_string();
    let config = WardenConfig::from_vars([
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_RATE_LIMIT_RPM", rpm.as_str()),
    ])
    .expect("configuration A is valid");
    WardenLayer::from_config(&config).expect("configuration A builds")
}

/// Configuration B: production rules; the client address from
/// `X-Forwarded-For` sent by `trusted_proxy` (depth 1); the
/// [`allow_list`]; RS256 tokens from `MCP_JWT_PUBLIC_KEY_FILE` with issuer
/// and audience checked (cached after the first verification); per-address
/// and per-principal rate limits in memory with quotas nobody reaches; a
/// 1 MiB body cap; only [`HOST_NAME`] served. Returns the layer and how
/// many prefixes its allow list holds.
///
/// # Panics
///
/// If the settings are refused (they are fixed and valid).
pub fn warden_full(trusted_proxy: &str) -> (WardenLayer, usize) {
    let allow = allow_list().join(",");
    let rpm = HUGE_RPM.to_string();
    let max_body = MAX_BODY.to_string();
    let config = WardenConfig::from_vars([
        ("MCP_ENVIRONMENT", "production"),
        ("MCP_TRUST_X_FORWARDED", "true"),
        ("MCP_TRUSTED_PROXIES", trusted_proxy),
        ("MCP_TRUSTED_PROXY_DEPTH", "1"),
        ("MCP_ALLOWED_IPS", allow.as_str()),
        ("MCP_JWT_PUBLIC_KEY_FILE", RSA_PUBLIC_FILE),
        ("MCP_JWT_ALGORITHM", "RS256"),
        ("MCP_JWT_ISSUER", ISSUER),
        ("MCP_JWT_AUDIENCE", AUDIENCE),
        ("MCP_RATE_LIMIT_RPM", rpm.as_str()),
        ("MCP_HTTP_MAX_BODY_BYTES", max_body.as_str()),
        ("MCP_ALLOWED_HOSTS", HOST_NAME),
    ])
    .expect("configuration B is valid");
    let layer = WardenLayer::from_config(&config).expect("configuration B builds");
    let len = layer.ip_lists().get().allow_len();
    (layer, len)
}

/// The peer of tower-http's bearer check: admits a request whose
/// `Authorization` is exactly `Bearer <token>`, answers 401 otherwise (what
/// tower-http's deprecated `ValidateRequestHeaderLayer::bearer` did, built
/// on its `custom` form).
pub struct BearerCheck<ResBody> {
    expected: HeaderValue,
    body: PhantomData<fn() -> ResBody>,
}

impl<ResBody> Clone for BearerCheck<ResBody> {
    fn clone(&self) -> Self {
        Self {
            expected: self.expected.clone(),
            body: PhantomData,
        }
    }
}

impl<B, ResBody: Default> ValidateRequest<B> for BearerCheck<ResBody> {
    type ResponseBody = ResBody;

    fn validate(&mut self, request: &mut Request<B>) -> Result<(), Response<ResBody>> {
        if request.headers().get(AUTHORIZATION) == Some(&self.expected) {
            Ok(())
        } else {
            let mut response = Response::new(ResBody::default());
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Err(response)
        }
    }
}

/// tower-http's `ValidateRequestHeaderLayer` checking for `Bearer <token>`.
#[must_use]
pub fn bearer_check<ResBody>(token: &str) -> ValidateRequestHeaderLayer<BearerCheck<ResBody>> {
    ValidateRequestHeaderLayer::custom(BearerCheck {
        expected: bearer(token),
        body: PhantomData,
    })
}

/// tower_governor keyed by the peer address (axum's `ConnectInfo`), with
/// its rate-limit headers, and a quota nobody reaches (a burst of 10^9,
/// one more every 10 ns).
///
/// # Panics
///
/// Never: the quota is valid.
#[must_use]
pub fn governor() -> GovernorLayer<PeerIpKeyExtractor, StateInformationMiddleware, axum::body::Body>
{
    let config = GovernorConfigBuilder::default()
        .period(Duration::from_nanos(10))
        .burst_size(1_000_000_000)
        .use_headers()
        .finish()
        .expect("a valid quota");
    GovernorLayer::new(config)
}
