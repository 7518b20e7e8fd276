//! Per-request cost of each layer on the admitted path, beside a service
//! with no middleware and beside the peer crate it replaces, in one run.
//!
//! The inner service answers at once, so the futures complete on their first
//! poll and no runtime is needed: what is measured is the layer itself.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::SocketAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, service_fn};
use tower_warden::body_limit::BodyLimitLayer;
use tower_warden::client_cert::ClientCertLayer;
use tower_warden::client_ip::ClientIpLayer;

fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the inner service answers at once"),
    }
}

/// A request as hyper hands it over: URI and header values share the read
/// buffer, so cloning them costs a reference count, not a copy (static bytes
/// stand in for that buffer here).
fn request() -> Request<Full<Bytes>> {
    let mut request = Request::post(http::Uri::from_static("/mcp"))
        .header("content-type", HeaderValue::from_static("application/json"))
        .header("content-length", HeaderValue::from_static("40"))
        .header(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.7, 203.0.113.9"),
        )
        .header("x-ssl-client-verify", HeaderValue::from_static("SUCCESS"))
        .body(Full::new(Bytes::from_static(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
        )))
        .unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from(([10, 0, 0, 2], 40000)));
    request
}

fn bench_service<S, B>(c: &mut Criterion, group: &str, name: &str, mut service: S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    c.benchmark_group(group).bench_function(name, |b| {
        // Requests are built before the clock starts and responses dropped
        // after it stops; dropping the request (inside `call`) is timed for
        // every entry alike, so the difference to the baseline is the layer.
        b.iter_custom(|iters| {
            let requests: Vec<_> = (0..iters).map(|_| request()).collect();
            let mut responses = Vec::with_capacity(requests.len());
            let start = Instant::now();
            for request in requests {
                responses.push(black_box(ready(service.call(request)).unwrap()));
            }
            let elapsed = start.elapsed();
            drop(responses);
            elapsed
        })
    });
}

fn inner() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn inner_any<B>() -> impl Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<B>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn layers(c: &mut Criterion) {
    bench_service(c, "baseline", "no middleware", inner());

    bench_service(
        c,
        "client_ip",
        "tower-warden peer only",
        ClientIpLayer::new().layer(inner()),
    );
    let behind_proxy = ClientIpLayer::new()
        .try_trusted_proxies(["10.0.0.0/8"])
        .unwrap()
        .depth(1);
    bench_service(
        c,
        "client_ip",
        "tower-warden trusted proxy, XFF",
        behind_proxy.layer(inner()),
    );

    let cert = ClientCertLayer::new()
        .try_trusted_proxies(["10.0.0.0/8"])
        .unwrap();
    bench_service(c, "client_cert", "tower-warden", cert.layer(inner()));

    bench_service(
        c,
        "body_limit",
        "tower-warden",
        BodyLimitLayer::new(1 << 20).layer(inner_any()),
    );
    bench_service(
        c,
        "body_limit",
        "tower-http RequestBodyLimit",
        tower_http::limit::RequestBodyLimitLayer::new(1 << 20).layer(inner_any()),
    );
    bench_service(
        c,
        "body_limit",
        "tower-warden rejection (413)",
        BodyLimitLayer::new(8).layer(inner_any()),
    );
    bench_service(
        c,
        "body_limit",
        "tower-http rejection (413)",
        tower_http::limit::RequestBodyLimitLayer::new(8).layer(inner_any()),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3))
        .sample_size(50);
    targets = layers
}
criterion_main!(benches);
