//! The admitted path, run `n` times without criterion, for profilers that
//! count (`valgrind --tool=callgrind`, `perf record`): instructions per
//! request, free of set-up and of whatever else the machine is doing.
//!
//! ```sh
//! cargo bench --bench admitted --no-run
//! valgrind --tool=callgrind --toggle-collect='*Runtime::block_on*' target/release/deps/admitted-* warden 100000
//! ```
//!
//! With `--toggle-collect`, only the measured loop is counted: divide the
//! total by `n`.
//!
//! Cases: `baseline`, `warden` (the reference server's defaults, HS256
//! cached), `auth` (`AuthLayer` alone, HS256 cached), `limit`
//! (`ClientIpLayer` + `RateLimitLayer`, one key, headers on), `client_ip`
//! (`ClientIpLayer` alone, the peer address), `host` (`HostOriginLayer`
//! alone).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service, ServiceExt};
use tower_warden::auth::{Algorithm, AuthLayer, JwtAuth};
use tower_warden::client_ip::ClientIpLayer;
use tower_warden::config::WardenConfig;
use tower_warden::mcp::HostOriginLayer;
use tower_warden::rate_limit::{KeyBy, MemoryStore, Quota, RateLimitLayer};
use tower_warden::stack::WardenLayer;

#[path = "support/admitted.rs"]
mod admitted;

use admitted::{Body, SECRET, inner, request, token};

fn run<S, B>(service: S, bearer: &HeaderValue, n: usize)
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let check = rt
        .block_on(service.clone().oneshot(request(bearer)))
        .unwrap();
    assert_eq!(check.status(), 200, "the request must be admitted");
    if std::env::var_os("ADMITTED_SIZES").is_some() {
        let mut s = service.clone();
        let future = s.call(request(bearer));
        println!(
            "future {} B, response {} B, request {} B",
            std::mem::size_of_val(&future),
            std::mem::size_of::<Response<B>>(),
            std::mem::size_of::<Request<Body>>()
        );
    }
    let requests: Vec<_> = (0..n).map(|_| request(bearer)).collect();
    let mut responses = Vec::with_capacity(n);
    let mut service = service;
    let elapsed = rt.block_on(timed(&mut service, requests, &mut responses));
    drop(responses);
    println!(
        "{n} requests, {:.0} ns each",
        elapsed.as_nanos() as f64 / n as f64
    );
}

/// The measured loop, apart so that a profiler can count it alone
/// (`--toggle-collect='*Runtime::block_on*'` counts it alone).
#[inline(never)]
async fn timed<S, B>(
    service: &mut S,
    requests: Vec<Request<Body>>,
    responses: &mut Vec<Response<B>>,
) -> std::time::Duration
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for request in requests {
        let ready = service.ready().await.unwrap();
        responses.push(black_box(ready.call(request).await.unwrap()));
    }
    start.elapsed()
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let case = args.next().unwrap_or_else(|| "warden".into());
    let n = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token())).unwrap();
    let quota = Quota::per_minute(1_000_000_000).unwrap();
    match case.as_str() {
        "baseline" => run(inner::<Body>(), &bearer, n),
        "warden" => {
            let config = WardenConfig::from_vars([
                ("MCP_JWT_SECRET", SECRET),
                ("MCP_RATE_LIMIT_RPM", "1000000000"),
            ])
            .unwrap();
            let warden = WardenLayer::from_config(&config).unwrap();
            run(warden.layer(inner()), &bearer, n);
        }
        "auth" => {
            let jwt = JwtAuth::builder()
                .hmac_secret(SECRET, Algorithm::HS256)
                .build()
                .unwrap();
            run(AuthLayer::jwt(jwt).layer(inner()), &bearer, n);
        }
        "limit" => {
            let limit =
                RateLimitLayer::new(quota, KeyBy::client_ip(), Arc::new(MemoryStore::new()));
            run(ClientIpLayer::new().layer(limit.layer(inner())), &bearer, n);
        }
        "client_ip" => run(ClientIpLayer::new().layer(inner()), &bearer, n),
        "host" => run(HostOriginLayer::new().layer(inner()), &bearer, n),
        other => panic!("unknown case {other}"),
    }
}
