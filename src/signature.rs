//! Signed webhooks: [`SignatureLayer`] admits a request only when its body
//! carries a valid HMAC-SHA256 signature by one of the configured secrets.
//!
//! Two schemes:
//!
//! | scheme | headers | signed bytes |
//! |---|---|---|
//! | [`SignatureScheme::GitHub`] | `X-Hub-Signature-256: sha256=<hex>` | the raw body |
//! | [`SignatureScheme::Standard`] ([Standard Webhooks]) | `webhook-id`, `webhook-timestamp` (Unix seconds), `webhook-signature: v1,<base64> …` | `<id>.<timestamp>.<body>` |
//!
//! The timestamped scheme also refuses a delivery whose timestamp is
//! further than the [tolerance](SignatureLayer::tolerance) (5 minutes by
//! default) from now, either way, and a delivery whose id was already
//! accepted within that window (a bounded memory: when it is full of live
//! ids a delivery is refused with 503 rather than an id forgotten). The
//! GitHub scheme signs the body only: a captured delivery stays valid, so
//! prefer the timestamped scheme where the sender offers it.
//!
//! Several secrets may be configured at once, so a secret can be rotated
//! without refusing deliveries signed with the old one: a signature by any
//! of them is accepted. Signatures are compared in constant time.
//!
//! The body is read whole (at most [`max_body_bytes`](SignatureLayer::max_body_bytes),
//! 1 MiB by default; a declared or streamed body over it is 413
//! `payload_too_large`) and handed on unchanged, so the inner service reads
//! exactly the bytes that were verified. A
//! [`BodyLimitLayer`](crate::body_limit::BodyLimitLayer) in front caps it
//! earlier. Refusals are the crate's problem answers: 401
//! `invalid_credentials` with a detail saying why (missing, malformed or
//! wrong signature, a timestamp out of tolerance, a replayed delivery),
//! and one event on the [audit target](crate::audit).
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_warden::signature::SignatureLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The secret configured on the sender, and the one it replaces.
//! let layer = SignatureLayer::github(["It's a Secret to Everybody", "the old one"])?;
//! let service = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|_: Request<Full<Bytes>>| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) });
//! let request = Request::post("/hooks")
//!     .header(
//!         "x-hub-signature-256",
//!         "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
//!     )
//!     .body(Full::new(Bytes::from_static(b"Hello, World!")))?;
//! assert_eq!(service.clone().oneshot(request).await?.status(), StatusCode::OK);
//! let forged = Request::post("/hooks")
//!     .header("x-hub-signature-256", "sha256=00")
//!     .body(Full::new(Bytes::from_static(b"Hello, World!")))?;
//! assert_eq!(service.oneshot(forged).await?.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```
//!
//! [Standard Webhooks]: https://www.standardwebhooks.com/

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{CONTENT_LENGTH, HeaderName, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use sha2::{Digest, Sha256};
use tower_layer::Layer;
use tower_service::Service;

use crate::audit;
use crate::body::ResponseBody;
use crate::error::ConfigError;
use crate::reject::{self, DefaultResponder, Reason, Rejection, Respond};
use crate::replay::{Recorded, ReplayCache};

type BoxError = Box<dyn StdError + Send + Sync>;

/// The header of a GitHub signature.
pub const X_HUB_SIGNATURE_256: HeaderName = HeaderName::from_static("x-hub-signature-256");
/// The id of a Standard Webhooks delivery.
pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
/// The send time of a Standard Webhooks delivery, in Unix seconds.
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
/// The signatures of a Standard Webhooks delivery.
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// Default [`SignatureLayer::tolerance`]: 5 minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// Default [`SignatureLayer::max_body_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1 << 20;
/// Default [`SignatureLayer::replay_capacity`].
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;
/// The longest `webhook-id` accepted, in bytes.
const MAX_ID_BYTES: usize = 256;

/// How a request is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureScheme {
    /// GitHub's: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    GitHub,
    /// Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256 of
    /// "<webhook-id>.<webhook-timestamp>.<body>">` (several, separated by
    /// spaces), within the tolerance, each id once.
    Standard,
}

impl SignatureScheme {
    /// Its setting value: `github` or `standard`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::Standard => "standard",
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads the current time; injectable for tests.
type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

struct Config {
    scheme: SignatureScheme,
    /// One keyed MAC per secret, cloned for each request.
    keys: Vec<Hmac<Sha256>>,
    tolerance: Duration,
    max_body: u64,
    replay: Arc<ReplayCache>,
    clock: Clock,
}

impl Clone for Config {
    fn clone(&self) -> Self {
        Self {
            scheme: self.scheme,
            keys: self.keys.clone(),
            tolerance: self.tolerance,
            max_body: self.max_body,
            replay: Arc::clone(&self.replay),
            clock: Arc::clone(&self.clock),
        }
    }
}

/// Admits only requests signed by one of its secrets; see the
/// [module docs](self).
///
/// Clones share the secrets and the memory of delivery ids.
#[derive(Clone)]
#[must_use]
pub struct SignatureLayer<R = DefaultResponder> {
    config: Arc<Config>,
    responder: R,
}

impl<R> fmt::Debug for SignatureLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureLayer")
            .field("scheme", &self.config.scheme)
            .field("secrets", &self.config.keys.len())
            .field("tolerance", &self.config.tolerance)
            .field("max_body", &self.config.max_body)
            .finish_non_exhaustive()
    }
}

impl SignatureLayer {
    /// GitHub-style signatures by any of `secrets` (the secret as
    /// configured on the sender, used as it is).
    ///
    /// # Errors
    ///
    /// No secret, or an empty one.
    pub fn github<I, S>(secrets: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        let secrets: Vec<Vec<u8>> = secrets.into_iter().map(|s| s.as_ref().to_vec()).collect();
        Self::with_keys(SignatureScheme::GitHub, &secrets)
    }

    /// Standard Webhooks signatures by any of `secrets`, each written as
    /// the sender shows it: `whsec_` and the base64 of the key (the prefix
    /// is optional).
    ///
    /// # Errors
    ///
    /// No secret, or one that is not base64 or is empty.
    pub fn standard<I, S>(secrets: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys = Vec::new();
        for secret in secrets {
            let text = secret.as_ref().trim();
            let text = text.strip_prefix("whsec_").unwrap_or(text);
            let key = STANDARD.decode(text).map_err(|_| {
                ConfigError::new(
                    "webhook secret",
                    "a Standard Webhooks secret is `whsec_` and base64",
                )
            })?;
            keys.push(key);
        }
        Self::with_keys(SignatureScheme::Standard, &keys)
    }

    /// Signatures of `scheme` by any of `secrets` (for a Standard Webhooks
    /// secret, as [`standard`](Self::standard) reads it).
    ///
    /// # Errors
    ///
    /// As [`github`](Self::github) and [`standard`](Self::standard).
    pub fn new<I, S>(scheme: SignatureScheme, secrets: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        match scheme {
            SignatureScheme::GitHub => {
                Self::github(secrets.into_iter().map(|s| s.as_ref().as_bytes().to_vec()))
            }
            SignatureScheme::Standard => Self::standard(secrets),
        }
    }

    fn with_keys(scheme: SignatureScheme, secrets: &[Vec<u8>]) -> Result<Self, ConfigError> {
        if secrets.is_empty() || secrets.iter().any(Vec::is_empty) {
            return Err(ConfigError::new(
                "webhook secret",
                "at least one secret, none of them empty",
            ));
        }
        let keys = secrets
            .iter()
            .map(|secret| {
                Hmac::<Sha256>::new_from_slice(secret)
                    .map_err(|_| ConfigError::new("webhook secret", "not usable as an HMAC key"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            config: Arc::new(Config {
                scheme,
                keys,
                tolerance: DEFAULT_TOLERANCE,
                max_body: DEFAULT_MAX_BODY_BYTES,
                replay: Arc::new(ReplayCache::new(DEFAULT_REPLAY_CAPACITY)),
                clock: Arc::new(SystemTime::now),
            }),
            responder: DefaultResponder,
        })
    }
}

impl<R> SignatureLayer<R> {
    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// How far a delivery's timestamp may be from now, either way
    /// (timestamped scheme only); also how long its id is remembered.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.config_mut().tolerance = tolerance;
        self
    }

    /// The largest body read and verified; a larger one is 413.
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.config_mut().max_body = bytes;
        self
    }

    /// About how many delivery ids are remembered at once (timestamped
    /// scheme). Beyond it, while all are within the tolerance, deliveries
    /// are refused with 503.
    pub fn replay_capacity(mut self, capacity: usize) -> Self {
        self.config_mut().replay = Arc::new(ReplayCache::new(capacity));
        self
    }

    /// Reads the time from `clock` instead of the system clock.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.config_mut().clock = Arc::new(clock);
        self
    }

    /// Answers refusals with `responder`.
    pub fn responder<R2: Respond>(self, responder: R2) -> SignatureLayer<R2> {
        SignatureLayer {
            config: self.config,
            responder,
        }
    }

    /// The scheme checked.
    #[must_use]
    pub fn scheme(&self) -> SignatureScheme {
        self.config.scheme
    }
}

impl<S, R: Clone> Layer<S> for SignatureLayer<R> {
    type Service = Signature<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Signature {
            inner,
            config: Arc::clone(&self.config),
            responder: self.responder.clone(),
        }
    }
}

/// The service of [`SignatureLayer`].
#[derive(Clone)]
pub struct Signature<S, R = DefaultResponder> {
    inner: S,
    config: Arc<Config>,
    responder: R,
}

impl<S: fmt::Debug, R> fmt::Debug for Signature<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signature")
            .field("inner", &self.inner)
            .field("scheme", &self.config.scheme)
            .finish_non_exhaustive()
    }
}

/// The signed parts of a request, read from its headers before the body.
enum Claimed {
    GitHub {
        mac: [u8; 32],
    },
    Standard {
        id: String,
        timestamp: u64,
        /// Every `v1` signature offered (others are ignored).
        macs: Vec<[u8; 32]>,
    },
}

/// Why a request was refused, for its detail and the audit line.
fn refused(detail: &'static str) -> Rejection {
    Rejection::new(Reason::InvalidCredentials).with_detail(detail)
}

impl Config {
    fn now(&self) -> u64 {
        (self.clock)()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The signature a request claims, from its headers.
    fn claimed(&self, headers: &HeaderMap) -> Result<Claimed, Rejection> {
        let one = |name: &HeaderName| -> Result<&str, Rejection> {
            let mut values = headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (Some(value), None) => value
                    .to_str()
                    .map(str::trim)
                    .map_err(|_| refused("the signature headers are not text")),
                (None, _) => Err(refused("the request is not signed")),
                (Some(_), Some(_)) => Err(refused("a signature header is repeated")),
            }
        };
        match self.scheme {
            SignatureScheme::GitHub => {
                let value = one(&X_HUB_SIGNATURE_256)?;
                let mac = value
                    .strip_prefix("sha256=")
                    .and_then(crate::config::hex_array::<32>)
                    .ok_or_else(|| refused("the signature is not sha256=<64 hex digits>"))?;
                Ok(Claimed::GitHub { mac })
            }
            SignatureScheme::Standard => {
                let id = one(&WEBHOOK_ID)?;
                if id.is_empty() || id.len() > MAX_ID_BYTES || id.contains('.') {
                    return Err(refused("the webhook-id is empty, too long or holds a dot"));
                }
                let timestamp = one(&WEBHOOK_TIMESTAMP)?
                    .parse::<u64>()
                    .map_err(|_| refused("the webhook-timestamp is not Unix seconds"))?;
                let now = self.now();
                let tolerance = self.tolerance.as_secs();
                if timestamp.abs_diff(now) > tolerance {
                    return Err(refused(
                        "the webhook-timestamp is outside the tolerance: too old, or in the future",
                    ));
                }
                let macs: Vec<[u8; 32]> = one(&WEBHOOK_SIGNATURE)?
                    .split(' ')
                    .filter_map(|entry| entry.strip_prefix("v1,"))
                    .filter_map(|b64| STANDARD.decode(b64).ok()?.try_into().ok())
                    .take(8)
                    .collect();
                if macs.is_empty() {
                    return Err(refused("the webhook-signature holds no v1 signature"));
                }
                Ok(Claimed::Standard {
                    id: id.to_owned(),
                    timestamp,
                    macs,
                })
            }
        }
    }

    /// Whether one of the secrets signed `body` as `claimed` says; for the
    /// timestamped scheme, also that its id is new.
    fn verify(&self, claimed: &Claimed, body: &[u8]) -> Result<(), Rejection> {
        let signed_by = |prefix: &[&[u8]], macs: &[[u8; 32]]| {
            self.keys.iter().any(|key| {
                let mut mac = key.clone();
                for part in prefix {
                    mac.update(part);
                }
                mac.update(body);
                // `verify_slice` compares in constant time; each candidate
                // with a fresh copy of the keyed state.
                macs.iter()
                    .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
            })
        };
        match claimed {
            Claimed::GitHub { mac } => {
                if signed_by(&[], std::slice::from_ref(mac)) {
                    Ok(())
                } else {
                    Err(refused("the signature does not match the body"))
                }
            }
            Claimed::Standard {
                id,
                timestamp,
                macs,
            } => {
                let stamp = timestamp.to_string();
                let dot: &[u8] = b".";
                if !signed_by(&[id.as_bytes(), dot, stamp.as_bytes(), dot], macs) {
                    return Err(refused("the signature does not match the delivery"));
                }
                // Remembered for as long as the delivery would be accepted.
                let key = u128::from_le_bytes(
                    Sha256::digest(id.as_bytes())[..16]
                        .try_into()
                        .unwrap_or([0; 16]),
                );
                let until = timestamp.saturating_add(self.tolerance.as_secs()) + 1;
                match self.replay.record(key, until, self.now()) {
                    Recorded::Fresh => Ok(()),
                    Recorded::Replayed => Err(refused("this delivery was already received")),
                    Recorded::Full => Err(Rejection::new(Reason::AuthUnavailable)
                        .with_detail("too many recent deliveries to remember; retry later")
                        .with_header(RETRY_AFTER, HeaderValue::from_static("10"))),
                }
            }
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, R, B, ResBody> Service<Request<B>> for Signature<S, R>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    R: Respond + Clone + Send + Sync + 'static,
    B: Body + From<Bytes> + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was driven ready is the one called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        let responder = self.responder.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let head = Request::from_parts(parts, ());
            let refuse = |rejection: Rejection, head: &Request<()>| {
                if rejection.reason() == Reason::InvalidCredentials {
                    audit::denied(
                        rejection.reason(),
                        head.extensions(),
                        None,
                        None,
                        rejection.detail(),
                    );
                }
                reject::render(&responder, rejection, head).map(ResponseBody::rejection)
            };
            let claimed = match config.claimed(head.headers()) {
                Ok(claimed) => claimed,
                Err(rejection) => return Ok(refuse(rejection, &head)),
            };
            let declared = head
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|len| len > config.max_body) {
                return Ok(refuse(Rejection::new(Reason::PayloadTooLarge), &head));
            }
            let limit = usize::try_from(config.max_body).unwrap_or(usize::MAX);
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                    return Ok(refuse(Rejection::new(Reason::PayloadTooLarge), &head));
                }
                Err(_) => {
                    return Ok(refuse(refused("the signed body could not be read"), &head));
                }
            };
            if let Err(rejection) = config.verify(&claimed, &bytes) {
                return Ok(refuse(rejection, &head));
            }
            let (parts, ()) = head.into_parts();
            let response = inner
                .call(Request::from_parts(parts, B::from(bytes)))
                .await?;
            Ok(response.map(ResponseBody::inner))
        })
    }
}

#[cfg(test)]
#[path = "signature/tests.rs"]
mod tests;
