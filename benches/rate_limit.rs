//! Per-request cost of `RateLimitLayer` (MemoryStore, headers on) at 1, 10k
//! and 1M keys, beside a service with no middleware and beside
//! `tower_governor` (governor's keyed DashMap store, headers on), in one run.
//!
//! Every quota is large enough that no request is refused: what is measured
//! is the admitted path. The inner service answers at once, so no runtime is
//! needed.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Layer, Service, service_fn};
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_warden::rate_limit::{KeyBy, MemoryStore, Quota, RateLimitLayer};

fn ready<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("the inner service answers at once"),
    }
}

fn request(n: u32) -> Request<()> {
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(SocketAddr::from((Ipv4Addr::from(n), 40000)));
    request
}

/// The peer address, as tower_governor's key.
#[derive(Clone, Copy)]
struct Peer;

impl KeyExtractor for Peer {
    type Key = std::net::IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, GovernorError> {
        req.extensions()
            .get::<SocketAddr>()
            .map(SocketAddr::ip)
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit");
    // 10^9 per 10 s: far more than a bench can send, so nothing is refused
    // and the admitted path is what is measured.
    let quota = Quota::per_window(Duration::from_secs(10), 1_000_000_000).unwrap();

    let mut baseline = service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
    });
    let mut i = 0u32;
    group.bench_function("baseline", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(ready(baseline.call(request(i))).unwrap())
        })
    });

    for keys in [1u32, 10_000, 1_000_000] {
        let store = Arc::new(MemoryStore::with_max_keys(1 << 20));
        let layer = RateLimitLayer::new(quota, KeyBy::client_ip(), store.clone());
        let mut svc = layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        }));
        let mut i = 0u32;
        group.bench_function(format!("tower-warden/{keys}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys;
                black_box(ready(svc.call(request(i))).unwrap())
            })
        });
        let len = store.len().max(1);
        println!(
            "MemoryStore: {len} keys, {} bytes per key",
            store.heap_bytes() / len
        );

        let config = GovernorConfigBuilder::default()
            .period(Duration::from_nanos(10))
            .burst_size(1_000_000_000)
            .key_extractor(Peer)
            .use_headers()
            .finish()
            .unwrap();
        let layer = tower_governor::GovernorLayer::new(config);
        let mut svc = layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(axum::body::Body::empty()))
        }));
        let mut i = 0u32;
        group.bench_function(format!("tower_governor/{keys}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys;
                black_box(ready(svc.call(request(i))).unwrap())
            })
        });
    }
    group.finish();
}

/// One decision alone, without a request: `MemoryStore::check` beside
/// governor's own keyed limiter (`check_key` on its DashMap store), which
/// keeps every key until `retain_recent` is called.
fn decision(c: &mut Criterion) {
    use governor::{Quota as GQuota, RateLimiter};
    use std::net::IpAddr;
    use std::num::NonZeroU32;
    use tower_warden::rate_limit::{RateKey, Store};

    let mut group = c.benchmark_group("decision");
    let quota = Quota::per_window(Duration::from_secs(10), 1_000_000_000).unwrap();
    let gquota = GQuota::with_period(Duration::from_nanos(10))
        .unwrap()
        .allow_burst(NonZeroU32::new(1_000_000_000).unwrap());
    for keys in [1u32, 10_000, 1_000_000] {
        let ip = |i: u32| IpAddr::from(Ipv4Addr::from(0x0a00_0000 + i));
        let store = MemoryStore::with_max_keys(1 << 20);
        let mut i = 0u32;
        group.bench_function(format!("MemoryStore/{keys}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys;
                black_box(store.check(&RateKey::Ip(ip(i)), &quota))
            })
        });
        let limiter = RateLimiter::keyed(gquota);
        let mut i = 0u32;
        group.bench_function(format!("governor-keyed/{keys}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys;
                black_box(limiter.check_key(&ip(i)).is_ok())
            })
        });
        println!(
            "keys {keys}: MemoryStore {} B/key; governor keeps {} keys",
            store.heap_bytes() / store.len().max(1),
            limiter.len()
        );
    }
    group.finish();
}

criterion_group!(benches, bench, decision);
criterion_main!(benches);
