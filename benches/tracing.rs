//! The admitted path with OpenTelemetry tracing off and on, in one run so
//! the figures compare:
//!
//! * `tracing/baseline`: the inner service alone.
//! * `tracing/warden`: `WardenLayer` (the reference server's defaults, a
//!   cached HS256 token), no request span, no subscriber.
//! * `tracing/warden_span_off`: the same inside tower-http's `TraceLayer`
//!   with `otel::request_span` and `otel::record_response`, as the
//!   reference server runs it, with no subscriber: tracing off.
//! * `tracing/tower_http_off`: the peer, off: tower-http's `TraceLayer`
//!   with its default span, no subscriber.
//! * `tracing/warden_span_on`: the same with the subscriber of
//!   `otel::Tracing::layer` (every request sampled, spans batched to an
//!   exporter that drops them): the request span, its attributes and the
//!   decision events of every layer.
//! * `tracing/tower_http_on`: the peer: tower-http's `TraceLayer` with its
//!   default span around the same `WardenLayer`, exported by
//!   `tracing-opentelemetry` alone (no parent from the headers, no
//!   decisions).

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::{AUTHORIZATION, HOST};
use http::{HeaderValue, Request, Response};
use http_body_util::Empty;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_http::trace::TraceLayer;
use tower_warden::auth::Algorithm;
use tower_warden::config::WardenConfig;
use tower_warden::otel::{self, Tracing};
use tower_warden::stack::WardenLayer;
use tracing_subscriber::layer::SubscriberExt as _;

const SECRET: &str = "a bench secret of at least thirty-two bytes, for HS256";
const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

type Body = Empty<Bytes>;

/// Drops every span it is given.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn provider() -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build()
}

fn token() -> String {
    tower_warden::auth::install_crypto_provider();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &serde_json::json!({"sub": "alice", "scope": "*", "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn request(bearer: &HeaderValue) -> Request<Body> {
    let mut request = Request::post("/mcp")
        .header(HOST, "localhost")
        .header(AUTHORIZATION, bearer.clone())
        .header("traceparent", PARENT)
        .body(Empty::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 1], 40000)));
    request
}

fn inner<B: Send + 'static>()
-> impl Service<Request<B>, Response = Response<Body>, Error = Infallible, Future: Send> + Clone {
    service_fn(|_: Request<B>| async { Ok::<_, Infallible>(Response::new(Empty::new())) })
}

fn bench<S, B>(c: &mut Criterion, rt: &Runtime, name: &str, service: S, bearer: &HeaderValue)
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let check = rt
        .block_on(service.clone().oneshot(request(bearer)))
        .unwrap();
    assert_eq!(check.status(), 200, "{name} must admit the request");
    c.bench_function(&format!("tracing/{name}"), |b| {
        let mut service = service.clone();
        b.iter_custom(|iters| {
            let requests: Vec<_> = (0..iters).map(|_| request(bearer)).collect();
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

fn tracing(c: &mut Criterion) {
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
    let warden = WardenLayer::from_config(&config).unwrap();
    let traced = TraceLayer::new_for_http()
        .make_span_with(otel::request_span)
        .on_request(())
        .on_response(|response: &Response<_>, _, span: &tracing::Span| {
            otel::record_response(span, response)
        })
        .layer(warden.layer(inner()));

    bench(c, &rt, "baseline", inner::<Body>(), &bearer);
    bench(c, &rt, "warden", warden.layer(inner()), &bearer);
    bench(c, &rt, "warden_span_off", traced.clone(), &bearer);
    let plain = TraceLayer::new_for_http().layer(warden.layer(inner()));
    bench(c, &rt, "tower_http_off", plain.clone(), &bearer);

    let on = Tracing::from_provider(provider());
    let subscriber = tracing_subscriber::registry().with(on.layer());
    tracing::subscriber::with_default(subscriber, || {
        bench(c, &rt, "warden_span_on", traced, &bearer);
    });
    on.shutdown().unwrap();

    let peer = provider();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(peer.tracer("peer")));
    tracing::subscriber::with_default(subscriber, || {
        bench(c, &rt, "tower_http_on", plain, &bearer);
    });
    peer.shutdown().unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = tracing
}
criterion_main!(benches);
