//! Per-request cost of the whole perimeter on the admitted path, in one run
//! so the figures compare:
//!
//! * `stack/baseline`: the inner service alone.
//! * `stack/warden`: `WardenLayer::from_config` with the reference server's
//!   defaults (client address, IP filter with no lists, per-address and
//!   per-principal rate limits in memory, body cap, JWT auth with a cached
//!   HS256 token, `Host` rules; the MCP policy off).
//! * `stack/hand_composed`: the same layers stacked by hand with
//!   `tower::ServiceBuilder`, the way one would without `stack` — the price
//!   of the `Optional` wrappers is the difference.
//! * `stack/warden_metrics`: `stack/warden` with `MetricsLayer` outside it
//!   and no recorder installed.
//! * `stack/tower_http_peer`: the tower-http layers an operator would
//!   otherwise put there for the same admitted request (request body limit,
//!   a bearer check against one fixed token) — far less protection, for a
//!   sense of the cost of what is added.
//!
//! Requests are built before the clock starts and responses dropped after
//! it stops. The quotas are large enough that nothing is refused.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceBuilder, service_fn};
use tower_warden::auth::{Algorithm, AuthLayer, JwtAuth};
use tower_warden::body_limit::BodyLimitLayer;
use tower_warden::client_ip::ClientIpLayer;
use tower_warden::config::WardenConfig;
use tower_warden::ip_filter::{IpFilterLayer, IpSet, IpSetHandle};
use tower_warden::mcp::HostOriginLayer;
use tower_warden::metrics::MetricsLayer;
use tower_warden::rate_limit::{KeyBy, MemoryStore, Quota, RateLimitLayer, Store};
use tower_warden::stack::WardenLayer;

#[path = "support/admitted.rs"]
mod admitted;

use admitted::{Body, SECRET, inner, request, token};

fn bench<S, B>(c: &mut Criterion, rt: &Runtime, name: &str, service: S, bearer: &HeaderValue)
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    admitted::bench(c, rt, &format!("stack/{name}"), service, || request(bearer));
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token())).unwrap();
    let config = WardenConfig::from_vars([
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_RATE_LIMIT_RPM", "1000000000"),
    ])
    .unwrap();

    bench(c, &rt, "baseline", inner::<Body>(), &bearer);

    let warden = WardenLayer::from_config(&config).unwrap();
    bench(c, &rt, "warden", warden.layer(inner()), &bearer);

    let quota = Quota::per_minute(1_000_000_000).unwrap();
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let jwt = JwtAuth::builder()
        .hmac_secret(SECRET, Algorithm::HS256)
        .build()
        .unwrap();
    let hand = ServiceBuilder::new()
        .layer(ClientIpLayer::new())
        .layer(IpFilterLayer::with_handle(IpSetHandle::new(
            IpSet::builder().build(),
        )))
        .layer(RateLimitLayer::new(quota, KeyBy::client_ip(), Arc::clone(&store)).policy_name("ip"))
        .layer(BodyLimitLayer::new(1024 * 1024))
        .layer(AuthLayer::jwt(jwt))
        .layer(HostOriginLayer::new())
        .layer(RateLimitLayer::new(quota, KeyBy::subject(), store).policy_name("principal"))
        .service(inner());
    bench(c, &rt, "hand_composed", hand, &bearer);

    let metered = MetricsLayer::new().layer(warden.layer(inner()));
    bench(c, &rt, "warden_metrics", metered, &bearer);

    let expected = bearer.clone();
    let peer = ServiceBuilder::new()
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1024 * 1024))
        .service(service_fn(move |request: Request<_>| {
            let ok = request.headers().get(AUTHORIZATION) == Some(&expected);
            async move {
                let mut response = Response::new(Empty::<Bytes>::new());
                if !ok {
                    *response.status_mut() = http::StatusCode::UNAUTHORIZED;
                }
                Ok::<_, Infallible>(response)
            }
        }));
    bench(c, &rt, "tower_http_peer", peer, &bearer);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = stack
}
criterion_main!(benches);
