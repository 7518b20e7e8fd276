//! The admitted path of the `bare` service, configuration A or
//! configuration B, `n` times, without criterion: for profilers that count
//! (`valgrind --tool=callgrind`), so that the instructions a request costs
//! can be read free of set-up and of whatever else the machine is doing.
//!
//! ```sh
//! cargo build --release --manifest-path benches/compare/Cargo.toml --bin admitted
//! valgrind --tool=callgrind --toggle-collect='*Runtime::block_on*' \
//!     target/release/admitted b 20000
//! ```
//!
//! With `--toggle-collect`, only the requests are counted (and one first
//! request that fills the token cache): divide the total by `n`, and
//! subtract `bare`'s figure for what the perimeter adds. With
//! `ADMITTED_CLONE=1` in the environment, each request goes to a fresh
//! clone of the service, as axum's router sends it.

use std::hint::black_box;

use axum::body::Body as Out;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_warden::body_limit::LimitedBody;
use tower_warden::mcp::RequestBody;
use tower_warden_compare::{
    Alg, PROXY, PROXY_NET, bare, bearer, request, warden_defaults, warden_full,
};

type Body = Full<Bytes>;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "b".into());
    let n: usize = args
        .next()
        .map_or(Ok(20_000), |n| n.parse())
        .expect("n is a number of requests");
    match case.as_str() {
        "bare" => run(bare::<Body, Out>(), Alg::Hs256, n),
        "a" => run(
            warden_defaults().layer(bare::<RequestBody<LimitedBody<Body>>, Out>()),
            Alg::Hs256,
            n,
        ),
        "b" => run(
            warden_full(PROXY_NET)
                .0
                .layer(bare::<RequestBody<LimitedBody<Body>>, Out>()),
            Alg::Rs256,
            n,
        ),
        other => panic!("unknown case {other}: bare, a or b"),
    }
}

fn run<S, B>(mut service: S, alg: Alg, n: usize)
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let token = bearer(&alg.token());
    let first = rt
        .block_on(service.clone().oneshot(request(PROXY, &token)))
        .expect("answered");
    assert_eq!(
        first.status(),
        StatusCode::OK,
        "the request must be admitted"
    );
    let requests: Vec<_> = (0..n).map(|_| request(PROXY, &token)).collect();
    let mut responses = Vec::with_capacity(n);
    // `ADMITTED_CLONE=1`: a clone of the service per request, as axum's
    // router makes one for every request it routes.
    let clone = std::env::var_os("ADMITTED_CLONE").is_some();
    rt.block_on(async {
        for request in requests {
            let response = if clone {
                service.clone().oneshot(request).await
            } else {
                let ready = service.ready().await.expect("ready");
                ready.call(request).await
            };
            responses.push(black_box(response.expect("answered")));
        }
    });
    assert!(responses.iter().all(|r| r.status() == StatusCode::OK));
}
