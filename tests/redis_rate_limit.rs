//! `RedisStore` against a real `redis-server`.
//!
//! The shared server comes from `TOWER_WARDEN_REDIS_URL` (`.ci/run` starts
//! one). Without it these tests say why and pass, unless
//! `TOWER_WARDEN_REQUIRE_SERVICES=1`, when they fail. The outage test starts
//! its own `redis-server` on a free port, stops it and starts it again.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "support/redis.rs"]
mod redis_support;

use redis_support::{OwnServer, free_port, have_redis_server, redis_url, unique_prefix};
use tower_warden::rate_limit::{
    Allowance, FailMode, MemoryStore, Quota, RateKey, RedisStore, Store,
};

async fn decide(store: &dyn Store, key: &RateKey, quota: &Quota) -> Allowance {
    store.check(key, quota).resolve().await
}

fn quota(burst: u32) -> Quota {
    Quota::per_window(Duration::from_secs(60), burst).unwrap()
}

async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_instances_share_one_quota() {
    let Some(url) = redis_url("two_instances_share_one_quota") else {
        return;
    };
    let prefix = unique_prefix("shared");
    let a = RedisStore::new(&url)
        .unwrap()
        .prefix(&prefix)
        .timeout(Duration::from_secs(2));
    let b = RedisStore::new(&url)
        .unwrap()
        .prefix(&prefix)
        .timeout(Duration::from_secs(2));
    let key = RateKey::Ip("203.0.113.9".parse().unwrap());
    let q = quota(5);
    let mut seen = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { &a } else { &b };
        let d = decide(store, &key, &q).await;
        seen.push((d.allowed, d.remaining));
        assert_eq!(d.limit, 5);
        if d.allowed {
            assert!(d.retry_after.is_none());
            assert!(d.reset_after <= Duration::from_secs(60));
        } else {
            // One request comes back every 12 s.
            let retry = d.retry_after.unwrap();
            assert!(retry > Duration::from_secs(11) && retry <= Duration::from_secs(12));
        }
    }
    assert_eq!(
        seen,
        [
            (true, 4),
            (true, 3),
            (true, 2),
            (true, 1),
            (true, 0),
            (false, 0),
            (false, 0),
            (false, 0)
        ]
    );
    // Another key, another allowance; the key expires with its allowance.
    assert!(decide(&a, &RateKey::Global, &q).await.allowed);
    let mut con = raw_connection(&url).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(a.key_for(&key))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 50_000 && ttl <= 60_000, "{ttl}");
    assert!(!a.is_degraded() && !b.is_degraded());
}

#[tokio::test]
async fn the_script_survives_script_flush() {
    let Some(url) = redis_url("the_script_survives_script_flush") else {
        return;
    };
    let store = RedisStore::new(&url)
        .unwrap()
        .prefix(unique_prefix("flush"))
        .timeout(Duration::from_secs(2))
        .fail_mode(FailMode::Closed);
    let key = RateKey::Text("tool/call with spaces".into());
    let q = quota(3);
    assert_eq!(decide(&store, &key, &q).await.remaining, 2);
    let mut con = raw_connection(&url).await;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut con)
        .await
        .unwrap();
    // EVALSHA now fails with NOSCRIPT; the store loads the script again and
    // the count goes on from Redis (Closed mode would refuse otherwise).
    let d = decide(&store, &key, &q).await;
    assert!(d.allowed);
    assert_eq!(d.remaining, 1);
    assert!(!store.is_degraded());
    assert_eq!(store.health().failures(), 0);
}

#[tokio::test]
async fn outage_degrades_to_the_fallback_and_recovers() {
    if !have_redis_server("outage test") {
        return;
    }
    let port = free_port();
    let server = OwnServer::start(port).expect("redis-server starts");
    let url = server.url();
    let prefix = unique_prefix("outage");
    let store = |fallback: Arc<dyn Store>| {
        RedisStore::new(&url)
            .unwrap()
            .prefix(&prefix)
            .timeout(Duration::from_millis(200))
            .retry_every(Duration::from_millis(20))
            .fallback(fallback)
    };
    let a = store(Arc::new(MemoryStore::new()));
    let b = store(Arc::new(MemoryStore::new()));
    let health = a.health();
    let q = quota(3);
    let key = RateKey::Text("alice".into());

    assert_eq!(decide(&a, &key, &q).await.remaining, 2);
    assert!(!health.is_degraded());

    server.stop();
    // Each instance now counts alone, with the same quota: 3 each.
    let local: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(decide(&a, &key, &q).await.allowed);
        }
        v
    };
    assert_eq!(local, [true, true, true, false]);
    assert!(health.is_degraded() && a.is_degraded());
    assert!(decide(&b, &key, &q).await.allowed);
    assert!(b.is_degraded());

    // Down, the other modes decide at once.
    let closed = RedisStore::new(&url)
        .unwrap()
        .timeout(Duration::from_millis(200))
        .fail_mode(FailMode::Closed);
    assert!(!decide(&closed, &key, &q).await.allowed);
    let open = RedisStore::new(&url)
        .unwrap()
        .timeout(Duration::from_millis(200))
        .fail_mode(FailMode::Open);
    assert!(decide(&open, &key, &q).await.allowed);

    // Back up on the same port (empty: nothing was saved).
    let _server = OwnServer::start(port).expect("redis-server starts again");
    let probe = RateKey::Text("probe".into());
    let deadline = Instant::now() + Duration::from_secs(10);
    for store in [&a, &b] {
        while store.is_degraded() {
            assert!(Instant::now() < deadline, "no recovery");
            decide(store, &probe, &quota(1000)).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert!(!health.is_degraded());
    // Shared counting again: the two instances draw on one allowance.
    let fresh = RateKey::Text("carol".into());
    let q2 = quota(2);
    assert!(decide(&a, &fresh, &q2).await.allowed);
    assert!(decide(&b, &fresh, &q2).await.allowed);
    assert!(!decide(&a, &fresh, &q2).await.allowed);
    assert!(!decide(&b, &fresh, &q2).await.allowed);
    assert!(!a.is_degraded() && !b.is_degraded());
}

#[test]
fn a_bad_url_is_a_config_error() {
    let err = RedisStore::new("redis//nope").unwrap_err();
    assert_eq!(err.setting(), "url");
    let err = tower_warden::config::relabel_redis_error(err);
    assert_eq!(err.setting(), "MCP_REDIS_URL");
}

/// `rediss://`: decisions over TLS when the server's certificate chains to
/// the given CA; a server the store cannot verify is never asked (the
/// store is degraded and decides by its fail mode).
#[cfg(feature = "redis-tls")]
#[tokio::test]
async fn tls_shares_a_quota_and_refuses_an_unverified_server() {
    let Some(server) = redis_support::OwnTlsServer::start("tls test") else {
        return;
    };
    let prefix = unique_prefix("tls");
    let store = || {
        RedisStore::with_root_certificates(&server.url(), &server.ca_pem)
            .unwrap()
            .prefix(&prefix)
            .timeout(Duration::from_secs(2))
    };
    let (a, b) = (store(), store());
    let key = RateKey::Text("alice".into());
    let q = quota(2);
    assert!(decide(&a, &key, &q).await.allowed);
    assert!(decide(&b, &key, &q).await.allowed);
    assert!(!decide(&a, &key, &q).await.allowed);
    assert!(!a.is_degraded() && !b.is_degraded());

    // The system's roots do not know the test CA: the TLS handshake fails,
    // so the store refuses (fail closed) rather than count unverified.
    let unverified = RedisStore::new(&server.url())
        .unwrap()
        .timeout(Duration::from_secs(2))
        .fail_mode(FailMode::Closed);
    let fresh = RateKey::Text("bob".into());
    assert!(!decide(&unverified, &fresh, &q).await.allowed);
    assert!(unverified.is_degraded());
    // Plain text to the TLS port gets nowhere either.
    let plain = RedisStore::new(&server.url().replace("rediss://", "redis://"))
        .unwrap()
        .timeout(Duration::from_millis(500))
        .fail_mode(FailMode::Closed);
    assert!(!decide(&plain, &fresh, &q).await.allowed);
}

#[test]
fn a_ca_file_without_tls_or_certificates_is_a_config_error() {
    let err = tower_warden::rate_limit::redis_client("redis://127.0.0.1/", Some(b"x")).unwrap_err();
    assert_eq!(err.setting(), "ca_pem");
    let err = RedisStore::with_root_certificates("rediss://127.0.0.1/", b"not a certificate")
        .unwrap_err();
    if cfg!(feature = "redis-tls") {
        assert_eq!(err.setting(), "ca_pem");
    } else {
        assert_eq!(err.setting(), "url", "TLS needs redis-tls");
        assert_eq!(
            RedisStore::new("rediss://127.0.0.1/")
                .unwrap_err()
                .setting(),
            "url"
        );
    }
}
