//! tower-warden beside the peer crates it replaces, per request on the
//! admitted path, in one criterion group (`perimeter`) so that one run gives
//! every figure and every ratio is to the `bare` case of the same run.
//!
//! Every case is driven the same way: one service, `ready().await` then
//! `call()`, in one `block_on` of a current-thread tokio runtime; requests
//! are built before the clock starts and responses dropped after it stops,
//! 256 at a time (so that a request is still in the cache when it is
//! served, as one hyper has just parsed would be).
//! Every request is the same `POST /mcp` (see `tower_warden_compare::request`)
//! and every case is checked to answer 200 before it is measured, and again
//! on every response after each measured batch.
//!
//! Cases, in the order they run:
//!
//! * `bare`: the inner service alone.
//! * `peer: …`: tower-http's bearer check and `RequestBodyLimitLayer`,
//!   tower_governor (peer address, headers on), jwt-authorizer HS256 and
//!   RS256 (it verifies every token: it has no cache).
//! * `warden: …`: each tower-warden layer alone, then `WardenLayer` in
//!   configurations A and B (`tower_warden_compare::warden_defaults`,
//!   `warden_full`).
//! * `warden: ClientIp + RateLimit, 1M live keys`: the limiter over a store
//!   holding one million throttled keys, requests cycling over them.
//! * `bare, again at the end`: the baseline once more; its distance from
//!   `bare` is how much the machine drifted during the run.

use std::fmt::Debug;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use jwt_authorizer::{IntoLayer, JwtAuthorizer, RegisteredClaims, Validation};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};
use tower_warden::auth::AuthLayer;
use tower_warden::body_limit::{BodyLimitLayer, LimitedBody};
use tower_warden::client_ip::ClientIpLayer;
use tower_warden::ip_filter::{IpFilterLayer, IpSet};
use tower_warden::mcp::{HostOriginLayer, RequestBody};
use tower_warden::rate_limit::{KeyBy, MemoryStore, Quota, RateLimitLayer};
use tower_warden_compare::{
    ALLOW_LIST_LEN, AUDIENCE, Alg, CLIENT, HUGE_RPM, ISSUER, MAX_BODY, PROXY, PROXY_NET,
    RSA_PUBLIC, SECRET, allow_list, bare, bearer, bearer_check, governor, request, warden_defaults,
    warden_full,
};

type Body = Full<Bytes>;
/// What the inner service receives behind `WardenLayer`.
type Warded = RequestBody<LimitedBody<Body>>;
/// The inner service's response body, for every case but jwt-authorizer.
type Out = axum::body::Body;

/// Requests are built and timed this many at a time: few enough that they
/// are still in the cache when served, as a request hyper has just parsed
/// is, and their responses dropped between chunks, off the clock.
const CHUNK: usize = 256;

/// How many distinct keys the "live keys" case fills its store with.
const LIVE_KEYS: u32 = 1_000_000;

struct Bench<'a> {
    group: BenchmarkGroup<'a, WallTime>,
    rt: Runtime,
}

impl Bench<'_> {
    /// Measures `service` over requests from `make` (called outside the
    /// timed region with a running request number).
    fn case<S, B>(&mut self, name: &str, service: S, mut make: impl FnMut(u64) -> Request<Body>)
    where
        S: Service<Request<Body>, Response = Response<B>> + Clone,
        S::Error: Debug,
    {
        let status = self
            .rt
            .block_on(service.clone().oneshot(make(0)))
            .expect("the service answers")
            .status();
        assert_eq!(status, StatusCode::OK, "{name} must admit the request");
        let rt = &self.rt;
        let mut service = service;
        let mut n = 1u64;
        self.group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut requests = Vec::with_capacity(CHUNK);
                let mut responses = Vec::with_capacity(CHUNK);
                rt.block_on(async {
                    let mut elapsed = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let chunk = left.min(CHUNK as u64);
                        left -= chunk;
                        requests.extend((0..chunk).map(|_| {
                            n += 1;
                            make(n)
                        }));
                        let start = Instant::now();
                        for request in requests.drain(..) {
                            let ready = service.ready().await.expect("ready");
                            responses.push(black_box(ready.call(request).await.expect("answered")));
                        }
                        elapsed += start.elapsed();
                        if let Some(refused) =
                            responses.iter().find(|r| r.status() != StatusCode::OK)
                        {
                            panic!("{name} answered {} while measured", refused.status());
                        }
                        responses.clear();
                    }
                    elapsed
                })
            });
        });
    }
}

fn perimeter(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut bench = Bench {
        group: c.benchmark_group("perimeter"),
        rt,
    };
    let tokens: Vec<HeaderValue> = Alg::ALL.iter().map(|alg| bearer(&alg.token())).collect();
    let hs256 = tokens[0].clone();
    let rs256 = tokens[1].clone();
    let from_proxy = |token: &HeaderValue| {
        let token = token.clone();
        move |_: u64| request(PROXY, &token)
    };
    let quota = Quota::per_minute(HUGE_RPM).expect("a valid quota");

    bench.case("bare", bare::<Body, Out>(), from_proxy(&hs256));

    // The peers.
    let token = Alg::Hs256.token();
    bench.case(
        "peer: tower-http bearer check",
        bearer_check(&token).layer(bare::<Body, Out>()),
        from_proxy(&hs256),
    );
    bench.case(
        "peer: tower-http RequestBodyLimit",
        tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY as usize)
            .layer(bare::<tower_http::body::Limited<Body>, Out>()),
        from_proxy(&hs256),
    );
    bench.case(
        "peer: tower_governor (peer IP, headers)",
        governor().layer(bare::<Body, Out>()),
        from_proxy(&hs256),
    );
    let validation = || Validation::new().iss(&[ISSUER]).aud(&[AUDIENCE]);
    let (hs, rs) = bench.rt.block_on(async {
        let hs = JwtAuthorizer::<RegisteredClaims>::from_secret(SECRET)
            .validation(validation())
            .build()
            .await
            .expect("jwt-authorizer HS256");
        let rs = JwtAuthorizer::<RegisteredClaims>::from_rsa_pem_text(RSA_PUBLIC)
            .validation(validation())
            .build()
            .await
            .expect("jwt-authorizer RS256");
        (hs, rs)
    });
    bench.case(
        "peer: jwt-authorizer HS256",
        hs.into_layer()
            .layer(bare::<Body, axum_core_04::body::Body>()),
        from_proxy(&hs256),
    );
    bench.case(
        "peer: jwt-authorizer RS256",
        rs.into_layer()
            .layer(bare::<Body, axum_core_04::body::Body>()),
        from_proxy(&rs256),
    );

    // tower-warden, one layer at a time.
    let behind_proxy = || {
        ClientIpLayer::new()
            .try_trusted_proxies([PROXY_NET])
            .expect("a valid prefix")
            .depth(1)
    };
    bench.case(
        "warden: ClientIpLayer (trusted proxy, XFF)",
        behind_proxy().layer(bare::<Body, Out>()),
        from_proxy(&hs256),
    );
    let set = IpSet::from_lists(allow_list(), Vec::<String>::new()).expect("a valid list");
    assert_eq!(set.allow_len(), ALLOW_LIST_LEN);
    // Alone, the filter judges the peer: here the client itself.
    let direct = SocketAddr::new(CLIENT, 40000);
    let direct_token = hs256.clone();
    bench.case(
        "warden: IpFilterLayer (100k prefixes)",
        IpFilterLayer::new(set).layer(bare::<Body, Out>()),
        move |_: u64| request(direct, &direct_token),
    );
    let limiter = RateLimitLayer::new(
        quota,
        KeyBy::client_ip(),
        Arc::new(MemoryStore::with_max_keys(1 << 21)),
    )
    .headers(true);
    bench.case(
        "warden: ClientIp + RateLimit (1 key, headers)",
        ClientIpLayer::new().layer(limiter.layer(bare::<Body, Out>())),
        from_proxy(&hs256),
    );
    bench.case(
        "warden: BodyLimitLayer",
        BodyLimitLayer::new(MAX_BODY).layer(bare::<LimitedBody<Body>, Out>()),
        from_proxy(&hs256),
    );
    for (alg, token) in Alg::ALL.iter().zip(&tokens) {
        bench.case(
            &format!("warden: AuthLayer {} (cached)", alg.name()),
            AuthLayer::jwt(alg.jwt_auth()).layer(bare::<Body, Out>()),
            from_proxy(token),
        );
    }
    bench.case(
        "warden: HostOriginLayer",
        HostOriginLayer::new().layer(bare::<Body, Out>()),
        from_proxy(&hs256),
    );

    // The whole perimeter.
    bench.case(
        "warden: WardenLayer A (defaults, HS256)",
        warden_defaults().layer(bare::<Warded, Out>()),
        from_proxy(&hs256),
    );
    let (full, listed) = warden_full(PROXY_NET);
    assert_eq!(listed, ALLOW_LIST_LEN);
    bench.case(
        "warden: WardenLayer B (full, RS256)",
        full.layer(bare::<Warded, Out>()),
        from_proxy(&rs256),
    );

    live_keys(&mut bench, &hs256);

    // The baseline again: how far the machine drifted during the run.
    bench.case(
        "bare, again at the end",
        bare::<Body, Out>(),
        from_proxy(&hs256),
    );
    bench.group.finish();
}

/// `ClientIpLayer` + `RateLimitLayer` over a store filled with [`LIVE_KEYS`]
/// distinct client addresses, each throttled (its allowance not back to
/// full, so never evicted) but far from refused: the quota refills one
/// request a day with a burst of 1 000, and each key gets one request to
/// fill it and a few while measured.
fn live_keys(bench: &mut Bench<'_>, token: &HeaderValue) {
    let quota = Quota::per_window(Duration::from_secs(86_400), 1)
        .and_then(|q| q.with_burst(1_000))
        .expect("a valid quota");
    let store = Arc::new(MemoryStore::with_max_keys(1 << 21));
    let limiter = RateLimitLayer::new(quota, KeyBy::client_ip(), store.clone()).headers(true);
    let mut service = ClientIpLayer::new().layer(limiter.layer(bare::<Body, Out>()));
    let peer = |n: u64| {
        let key = u32::try_from(n % u64::from(LIVE_KEYS)).expect("below LIVE_KEYS");
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + key)), 40000)
    };
    let filled = bench.rt.block_on(async {
        let mut admitted = 0u32;
        for n in 0..u64::from(LIVE_KEYS) {
            let response = service
                .ready()
                .await
                .expect("ready")
                .call(request(peer(n), token))
                .await
                .expect("answered");
            admitted += u32::from(response.status() == StatusCode::OK);
        }
        admitted
    });
    assert_eq!(filled, LIVE_KEYS, "every key's first request is admitted");
    assert_eq!(store.len(), LIVE_KEYS as usize, "every key is held");
    let token = token.clone();
    bench.case(
        "warden: ClientIp + RateLimit, 1M live keys",
        service,
        move |n| request(peer(n * 7919), &token),
    );
    assert_eq!(store.len(), LIVE_KEYS as usize, "no key was evicted");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    targets = perimeter
}
criterion_main!(benches);
