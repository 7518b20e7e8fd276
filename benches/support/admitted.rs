//! What the admitted-path benches (`stack`, `tracing`, `admitted`) share:
//! the HS256 secret and a token signed with it, the request it rides on,
//! an inner service that answers at once, and the criterion loop.

#![allow(dead_code)] // each bench uses its part

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use criterion::Criterion;
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt, service_fn};
use tower_warden::auth::Algorithm;

/// The HMAC secret of the benches' tokens.
pub const SECRET: &str = "a bench secret of at least thirty-two bytes, for HS256";

/// The request body: none.
pub type Body = Empty<Bytes>;

/// An HS256 token for `alice`, every scope, far from expiry.
pub fn token() -> String {
    tower_warden::auth::install_crypto_provider();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &serde_json::json!({"sub": "alice", "scope": "*", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// `POST /mcp` to `localhost` with `bearer`, from a documentation address.
pub fn request(bearer: &HeaderValue) -> Request<Body> {
    let mut request = Request::post("/mcp")
        .header(HOST, "localhost")
        .header(AUTHORIZATION, bearer.clone())
        .body(Empty::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 1], 40000)));
    request
}

/// A service that answers 200 at once.
pub fn inner<B: Send + 'static>()
-> impl Service<Request<B>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone {
    service_fn(|_: Request<B>| async { Ok::<_, Infallible>(Response::new(Empty::new())) })
}

/// Benches `service` as `name` on requests made by `make`, after checking
/// that it admits one. Requests are built before the clock starts and
/// responses dropped after it stops.
pub fn bench<S, B>(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    service: S,
    make: impl Fn() -> Request<Body>,
) where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let check = rt.block_on(service.clone().oneshot(make())).unwrap();
    assert_eq!(check.status(), 200, "{name} must admit the request");
    c.bench_function(name, |b| {
        let mut service = service.clone();
        b.iter_custom(|iters| {
            let requests: Vec<_> = (0..iters).map(|_| make()).collect();
            let mut responses = Vec::with_capacity(requests.len());
            let elapsed = rt.block_on(async {
                let start = Instant::now();
                for request in requests {
                    let ready = service.ready().await.unwrap();
                    responses.push(black_box(ready.call(request).await.unwrap()));
                }
                start.elapsed()
            });
            drop(responses);
            elapsed
        });
    });
}
