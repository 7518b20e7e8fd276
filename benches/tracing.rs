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

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tokio::runtime::Runtime;
use tower::{Layer, Service};
use tower_http::trace::TraceLayer;
use tower_warden::config::WardenConfig;
use tower_warden::otel::{self, Tracing};
use tower_warden::stack::WardenLayer;
use tracing_subscriber::layer::SubscriberExt as _;

const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[path = "support/admitted.rs"]
mod admitted;

use admitted::{Body, SECRET, inner, token};

/// The shared request, carrying the caller's trace context.
fn request(bearer: &HeaderValue) -> Request<Body> {
    let mut request = admitted::request(bearer);
    request
        .headers_mut()
        .insert("traceparent", HeaderValue::from_static(PARENT));
    request
}

fn bench<S, B>(c: &mut Criterion, rt: &Runtime, name: &str, service: S, bearer: &HeaderValue)
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    admitted::bench(c, rt, &format!("tracing/{name}"), service, || {
        request(bearer)
    });
}

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
