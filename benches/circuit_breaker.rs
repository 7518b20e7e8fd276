//! `CircuitBreakerLayer` per request beside a service with no middleware:
//! closed (the breaker consulted and told the outcome), and open (refused
//! at once with a rendered 503); plus the bare breaker's acquire and
//! verdict.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Layer, Service, service_fn};
use tower_warden::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};

fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the inner service answers at once"),
    }
}

fn request() -> Request<()> {
    Request::builder()
        .uri("/mcp")
        .header("content-type", "application/json")
        .body(())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    // The breaker reads tokio's clock only when open; a runtime context is
    // still needed for `tokio::time::Instant` in test-util builds.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut group = c.benchmark_group("circuit_breaker");

    let mut baseline =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    group.bench_function("baseline", |b| {
        b.iter(|| black_box(ready(baseline.call(request())).unwrap()))
    });

    let closed = CircuitBreaker::builder("bench").build().unwrap();
    let mut svc =
        CircuitBreakerLayer::new(closed.clone()).layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    group.bench_function("closed", |b| {
        b.iter(|| black_box(ready(svc.call(request())).unwrap()))
    });

    let open = CircuitBreaker::builder("bench-open")
        .failure_threshold(1)
        .reset_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    open.try_acquire().unwrap().failure();
    let mut svc = CircuitBreakerLayer::new(open).layer(service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    group.bench_function("open_rejection", |b| {
        b.iter(|| black_box(ready(svc.call(request())).unwrap()))
    });

    group.bench_function("acquire_and_success", |b| {
        b.iter(|| closed.try_acquire().unwrap().success())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
