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
use hmac::{Hmac, Mac};
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use sha2::Sha256;
use tower::{Layer, Service, service_fn};
use tower_warden::body_limit::BodyLimitLayer;
use tower_warden::client_cert::ClientCertLayer;
use tower_warden::client_ip::ClientIpLayer;
use tower_warden::signature::SignatureLayer;

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

fn bench_service<S, B>(c: &mut Criterion, group: &str, name: &str, service: S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
{
    bench_requests(c, group, name, request, service);
}

fn bench_requests<S, B>(
    c: &mut Criterion,
    group: &str,
    name: &str,
    request: fn() -> Request<Full<Bytes>>,
    mut service: S,
) where
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

/// The secret of the signed-webhook benches.
const HOOK_SECRET: &[u8] = b"webhook secret of the benches";
/// A 1 KiB webhook body.
static HOOK_BODY: [u8; 1024] = [b'x'; 1024];

/// A 1 KiB webhook delivery signed GitHub's way.
fn signed() -> Request<Full<Bytes>> {
    static SIGNATURE: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    let signature = SIGNATURE.get_or_init(|| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(HOOK_SECRET).unwrap();
        mac.update(&HOOK_BODY);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        HeaderValue::from_str(&format!("sha256={hex}")).unwrap()
    });
    Request::post(http::Uri::from_static("/webhooks"))
        .header("content-type", HeaderValue::from_static("application/json"))
        .header("x-hub-signature-256", signature.clone())
        .body(Full::new(Bytes::from_static(&HOOK_BODY)))
        .unwrap()
}

/// What one writes with the `hmac` crate directly, as the peer of
/// `SignatureLayer`: collect the body, check the header's MAC, call on.
fn hmac_directly() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(|request: Request<Full<Bytes>>| async move {
        use http_body_util::BodyExt as _;
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let claimed = parts
            .headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("sha256="))
            .map(|hex| {
                (0..hex.len())
                    .step_by(2)
                    .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                    .collect::<Vec<u8>>()
            })
            .unwrap_or_default();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(HOOK_SECRET).unwrap();
        mac.update(&body);
        let status = if mac.verify_slice(&claimed).is_ok() {
            200
        } else {
            401
        };
        let request = Request::from_parts(parts, Full::new(body));
        black_box(request);
        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok::<_, Infallible>(response)
    })
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

    bench_requests(c, "signature", "no middleware (1 KiB)", signed, inner());
    bench_requests(
        c,
        "signature",
        "tower-warden GitHub (1 KiB)",
        signed,
        SignatureLayer::github([HOOK_SECRET])
            .unwrap()
            .layer(inner()),
    );
    bench_requests(
        c,
        "signature",
        "hmac used directly (1 KiB)",
        signed,
        hmac_directly(),
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
