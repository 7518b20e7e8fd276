//! Counters, gauges and a latency histogram through the [`metrics`] facade
//! (feature `metrics`), for whatever recorder the application installs
//! (Prometheus, StatsD, OpenTelemetry...).
//!
//! [`MetricsLayer`] goes outside every other tower-warden layer. It sees
//! each response once: an admitted request, or a refusal (the typed
//! [`Rejection`] every layer leaves in the response extensions) with the
//! layer and reason that refused it. The other layers record their own
//! events as they happen; nothing is recorded when the feature is off.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `tower_warden_requests_admitted_total` | counter | — | requests every layer admitted |
//! | `tower_warden_requests_rejected_total` | counter | `layer`, `reason` | refusals, by the layer ([`Reason::layer`]) and machine code ([`Reason::code`]) |
//! | `tower_warden_auth_failures_total` | counter | `reason` | missing, invalid or expired credentials, and credentials that could not be checked |
//! | `tower_warden_request_duration_seconds` | histogram | `outcome` (`admitted`, `rejected`, `error`) | time from the request to its response head |
//! | `tower_warden_rate_limit_decisions_total` | counter | `policy`, `decision` (`allowed`, `limited`) | every rate-limit decision |
//! | `tower_warden_rate_limit_degraded` | gauge | — | 1 while a shared (Redis) store decides without its backend |
//! | `tower_warden_circuit_breaker_state` | gauge | `breaker` | 0 closed, 1 half-open, 2 open |
//! | `tower_warden_circuit_breaker_transitions_total` | counter | `breaker`, `to` | state changes |
//! | `tower_warden_jwks_refreshes_total` | counter | `result` (`ok`, `error`) | JWKS fetches and reloads |
//! | `tower_warden_token_cache_total` | counter | `result` (`hit`, `miss`) | lookups in the verified-token cache |
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_warden::ip_filter::{IpFilterLayer, IpSet};
//! use tower_warden::metrics::MetricsLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let metrics = MetricsLayer::new();
//! let service = ServiceBuilder::new()
//!     .layer(metrics.clone())
//!     .layer(IpFilterLayer::new(IpSet::builder().deny("203.0.113.0/24".parse::<ipnet::IpNet>().unwrap()).build()))
//!     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//!
//! let mut request = Request::new(());
//! request.extensions_mut().insert("203.0.113.9:4000".parse::<std::net::SocketAddr>().unwrap());
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//!
//! // The same counts, without a recorder (for a status page).
//! let counts = metrics.counts();
//! assert_eq!(counts.rejected(tower_warden::reject::Reason::IpDenied), 1);
//! assert_eq!(counts.admitted(), 0);
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::reject::{Reason, Rejection};

pub use crate::telemetry::{
    AUTH_FAILURES, BREAKER_STATE, BREAKER_TRANSITIONS, JWKS_REFRESHES, RATE_LIMIT_DECISIONS,
    RATE_LIMIT_DEGRADED, REQUEST_DURATION, REQUESTS_ADMITTED, REQUESTS_REJECTED, TOKEN_CACHE,
};

/// Counts requests and refusals for the [`metrics`] facade and in its own
/// counters ([`counts`](Self::counts)). Clones share the counters.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct MetricsLayer {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    admitted: AtomicU64,
    errors: AtomicU64,
    rejected: [AtomicU64; Reason::ALL.len()],
}

impl MetricsLayer {
    /// A layer with counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far, of this layer and its clones.
    #[must_use]
    pub fn counts(&self) -> RequestCounts {
        let c = &self.counters;
        RequestCounts {
            admitted: c.admitted.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            rejected: std::array::from_fn(|i| c.rejected[i].load(Ordering::Relaxed)),
        }
    }
}

/// A snapshot of a [`MetricsLayer`]'s counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestCounts {
    admitted: u64,
    errors: u64,
    rejected: [u64; Reason::ALL.len()],
}

impl RequestCounts {
    /// Requests every layer admitted.
    #[must_use]
    pub fn admitted(&self) -> u64 {
        self.admitted
    }

    /// Requests whose inner service failed with an error (not a response).
    #[must_use]
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Requests refused for `reason`.
    #[must_use]
    pub fn rejected(&self, reason: Reason) -> u64 {
        self.rejected[reason.index()]
    }

    /// Every reason refused at least once, with its count.
    pub fn rejections(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL
            .into_iter()
            .zip(self.rejected)
            .filter(|(_, n)| *n > 0)
    }

    /// All refused requests.
    #[must_use]
    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics {
            inner,
            counters: Arc::clone(&self.counters),
        }
    }
}

/// The service of [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct Metrics<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl Metrics<()> {
    /// A layer with counters at zero; see [`MetricsLayer::new`].
    pub fn layer() -> MetricsLayer {
        MetricsLayer::new()
    }
}

impl<S> Metrics<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Metrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
            started: Instant::now(),
            counters: Arc::clone(&self.counters),
        }
    }
}

pin_project! {
    /// The response future of [`Metrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        counters: Arc<Counters>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let seconds = this.started.elapsed().as_secs_f64();
        let outcome = match &result {
            Ok(response) => match response.extensions().get::<Rejection>() {
                Some(rejection) => {
                    let reason = rejection.reason();
                    this.counters.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
                    ::metrics::counter!(REQUESTS_REJECTED, "layer" => reason.layer(), "reason" => reason.code())
                        .increment(1);
                    if reason.is_auth_failure() {
                        ::metrics::counter!(AUTH_FAILURES, "reason" => reason.code()).increment(1);
                    }
                    "rejected"
                }
                None => {
                    this.counters.admitted.fetch_add(1, Ordering::Relaxed);
                    ::metrics::counter!(REQUESTS_ADMITTED).increment(1);
                    "admitted"
                }
            },
            Err(_) => {
                this.counters.errors.fetch_add(1, Ordering::Relaxed);
                "error"
            }
        };
        ::metrics::histogram!(REQUEST_DURATION, "outcome" => outcome).record(seconds);
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;

    use http::StatusCode;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tower::{ServiceBuilder, ServiceExt};

    use super::*;
    use crate::ip_filter::{IpFilterLayer, IpSet};
    use crate::rate_limit::{KeyBy, MemoryStore, Quota, RateLimitLayer};

    fn request(peer: &str) -> Request<()> {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        request
    }

    /// Runs `f` on a fresh runtime with a Prometheus recorder installed for
    /// this thread, and returns what the recorder renders.
    fn recorded<F: Future<Output = ()>>(f: impl FnOnce() -> F) -> String {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::with_local_recorder(&recorder, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap()
                .block_on(f());
        });
        handle.render()
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn refusals_and_admissions_are_counted_by_layer_and_reason() {
        let layer = MetricsLayer::new();
        let counts_layer = layer.clone();
        let text = recorded(|| async move {
            let service = ServiceBuilder::new()
                .layer(layer)
                .layer(IpFilterLayer::new(
                    IpSet::builder()
                        .deny("203.0.113.0/24".parse::<ipnet::IpNet>().unwrap())
                        .build(),
                ))
                .layer(RateLimitLayer::new(
                    Quota::per_minute(2).unwrap(),
                    KeyBy::client_ip(),
                    Arc::new(MemoryStore::new()),
                ))
                .service_fn(|_: Request<()>| async {
                    Ok::<_, Infallible>(Response::new(String::new()))
                });
            let status = |peer: &'static str| {
                let service = service.clone();
                async move { service.oneshot(request(peer)).await.unwrap().status() }
            };
            assert_eq!(status("203.0.113.9:1").await, StatusCode::FORBIDDEN);
            assert_eq!(status("198.51.100.1:1").await, StatusCode::OK);
            assert_eq!(status("198.51.100.1:1").await, StatusCode::OK);
            assert_eq!(
                status("198.51.100.1:1").await,
                StatusCode::TOO_MANY_REQUESTS
            );
        });
        assert_eq!(
            value(
                &text,
                r#"tower_warden_requests_rejected_total{layer="ip_filter",reason="ip_denied"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"tower_warden_requests_rejected_total{layer="rate_limit",reason="rate_limited"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(&text, "tower_warden_requests_admitted_total"),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"tower_warden_rate_limit_decisions_total{policy="default",decision="allowed"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"tower_warden_rate_limit_decisions_total{policy="default",decision="limited"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert!(
            text.contains("tower_warden_request_duration_seconds"),
            "{text}"
        );
        // The layer's own counters agree, without any recorder.
        let counts = counts_layer.counts();
        assert_eq!(counts.admitted(), 2);
        assert_eq!(counts.rejected(Reason::IpDenied), 1);
        assert_eq!(counts.rejected(Reason::RateLimited), 1);
        assert_eq!(counts.total_rejected(), 2);
        assert_eq!(
            counts.rejections().collect::<Vec<_>>(),
            [(Reason::IpDenied, 1), (Reason::RateLimited, 1)]
        );
    }

    #[cfg(feature = "auth")]
    #[test]
    fn auth_failures_and_token_cache_are_counted() {
        use crate::auth::{Algorithm, AuthLayer, JwtAuth};
        const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
        let jwt = JwtAuth::builder()
            .hmac_secret(SECRET, Algorithm::HS256)
            .build()
            .unwrap();
        crate::auth::install_crypto_provider();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "alice", "exp": 4_000_000_000u64}),
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        let text = recorded(|| async move {
            let service = ServiceBuilder::new()
                .layer(MetricsLayer::new())
                .layer(AuthLayer::jwt(jwt))
                .service_fn(|_: Request<()>| async {
                    Ok::<_, Infallible>(Response::new(String::new()))
                });
            let call = |auth: Option<String>| {
                let service = service.clone();
                async move {
                    let mut request = request("192.0.2.1:1");
                    if let Some(auth) = auth {
                        request
                            .headers_mut()
                            .insert("authorization", auth.parse().unwrap());
                    }
                    service.oneshot(request).await.unwrap().status()
                }
            };
            assert_eq!(call(None).await, StatusCode::UNAUTHORIZED);
            assert_eq!(
                call(Some("Bearer not.a.jwt".into())).await,
                StatusCode::UNAUTHORIZED
            );
            assert_eq!(call(Some(format!("Bearer {token}"))).await, StatusCode::OK);
            assert_eq!(call(Some(format!("Bearer {token}"))).await, StatusCode::OK);
        });
        assert_eq!(
            value(
                &text,
                r#"tower_warden_auth_failures_total{reason="unauthenticated"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"tower_warden_auth_failures_total{reason="invalid_credentials"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(&text, r#"tower_warden_token_cache_total{result="hit"}"#),
            Some(1.0),
            "{text}"
        );
    }

    #[cfg(feature = "circuit-breaker")]
    #[test]
    fn breaker_transitions_set_the_state_gauge() {
        use crate::circuit_breaker::CircuitBreaker;
        let text = recorded(|| async {
            let breaker = CircuitBreaker::builder("billing")
                .failure_threshold(1)
                .reset_timeout(std::time::Duration::from_secs(1))
                .build()
                .unwrap();
            breaker.try_acquire().unwrap().failure();
            assert!(breaker.try_acquire().is_err());
        });
        assert_eq!(
            value(
                &text,
                r#"tower_warden_circuit_breaker_state{breaker="billing"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"tower_warden_circuit_breaker_transitions_total{breaker="billing",to="open"}"#
            ),
            Some(1.0),
            "{text}"
        );
    }
}
