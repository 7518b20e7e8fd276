//! Decisions per second of `RedisStore` against the `redis-server` named by
//! `TOWER_WARDEN_REDIS_URL` (loopback in CI): one atomic script call each.
//!
//! * `redis_rate_limit/sequential`: one decision at a time (latency bound).
//! * `redis_rate_limit/in_flight_64`, `in_flight_256`: that many decisions
//!   kept in flight on the one multiplexed connection (throughput bound);
//!   the time is per decision, the throughput decisions per second.
//!
//! Without `TOWER_WARDEN_REDIS_URL` the bench says so and measures nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::stream::{self, StreamExt};
use tokio::runtime::Runtime;
use tower_warden::rate_limit::{Allowance, Quota, RateKey, RedisStore, Store};

async fn decide(store: &RedisStore, key: &RateKey, quota: &Quota) -> Allowance {
    store.check(key, quota).resolve().await
}

fn redis(c: &mut Criterion) {
    let Ok(url) = std::env::var("TOWER_WARDEN_REDIS_URL") else {
        eprintln!("redis_rate_limit: skipped: TOWER_WARDEN_REDIS_URL is unset");
        return;
    };
    let rt = Runtime::new().unwrap();
    let store = RedisStore::new(&url)
        .unwrap()
        .prefix("tw-bench:rl:")
        .timeout(Duration::from_secs(1));
    // A quota that never runs out during the bench, so every call writes.
    let quota = Quota::per_window(Duration::from_secs(1), 1_000_000_000).unwrap();
    let keys: Vec<RateKey> = (0..1024u32)
        .map(|i| RateKey::Text(format!("user-{i}").into()))
        .collect();
    rt.block_on(decide(&store, &keys[0], &quota));

    let mut group = c.benchmark_group("redis_rate_limit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sequential", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let key = &keys[(i % 1024) as usize];
                    black_box(decide(&store, key, &quota).await);
                }
                start.elapsed()
            })
        });
    });
    // Decisions kept in flight: as one finishes the next starts, so the
    // connection never drains (a batch that waits for its slowest member
    // measures the barrier, not the store).
    for in_flight in [64usize, 256] {
        group.bench_function(format!("in_flight_{in_flight}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let mut decisions = stream::iter(0..iters)
                        .map(|i| decide(&store, &keys[(i % 1024) as usize], &quota))
                        .buffer_unordered(in_flight);
                    while let Some(decision) = decisions.next().await {
                        black_box(decision.allowed);
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
    assert!(!store.is_degraded(), "Redis failed during the bench");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = redis
}
criterion_main!(benches);
