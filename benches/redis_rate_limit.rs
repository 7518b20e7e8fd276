//! Decisions per second of `RedisStore` against the `redis-server` named by
//! `TOWER_WARDEN_REDIS_URL` (loopback in CI): one atomic script call each.
//!
//! * `redis_rate_limit/sequential`: one decision at a time (latency bound).
//! * `redis_rate_limit/concurrent_64`: 64 decisions in flight on the one
//!   multiplexed connection (throughput bound); the time is per batch of 64.
//!
//! Without `TOWER_WARDEN_REDIS_URL` the bench says so and measures nothing.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
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
    let shared = Arc::new(store.clone());
    let keys = Arc::new(keys);
    group.bench_function("concurrent_64", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let tasks: Vec<_> = (0..64usize)
                        .map(|i| {
                            let store = Arc::clone(&shared);
                            let keys = Arc::clone(&keys);
                            tokio::spawn(async move {
                                decide(&store, &keys[i * 16], &quota).await.allowed
                            })
                        })
                        .collect();
                    for task in tasks {
                        black_box(task.await.unwrap());
                    }
                }
                start.elapsed()
            })
        });
    });
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
