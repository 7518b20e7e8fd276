use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::body::ResponseBody;
use crate::guard::NowOrLater;
use crate::principal::{AuthMethod, McpCall, Principal};

type Res = Response<ResponseBody<String>>;

fn service(
    layer: RateLimitLayer,
) -> (
    impl Service<Request<()>, Response = Res, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let inner = service_fn(move |_: Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }
    });
    (layer.layer(inner), calls)
}

fn from(ip: &str) -> Request<()> {
    let mut request = Request::new(());
    let ip: IpAddr = ip.parse().unwrap();
    request.extensions_mut().insert(SocketAddr::new(ip, 1234));
    request
}

async fn send<S>(svc: &mut S, request: Request<()>) -> Res
where
    S: Service<Request<()>, Response = Res, Error = Infallible>,
{
    svc.ready().await.unwrap().call(request).await.unwrap()
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(n).unwrap()
}

#[tokio::test(start_paused = true)]
async fn burst_then_429_with_retry_after_then_refill() {
    let (mut svc, calls) = service(RateLimitLayer::memory(per_minute(2), KeyBy::client_ip()));
    for _ in 0..2 {
        assert_eq!(
            send(&mut svc, from("192.0.2.1")).await.status(),
            StatusCode::OK
        );
    }
    let refused = send(&mut svc, from("192.0.2.1")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "30");
    assert_eq!(refused.headers()["ratelimit"], "\"default\";r=0;t=60");
    assert_eq!(
        refused.headers()["ratelimit-policy"],
        "\"default\";q=2;w=60"
    );
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "inner service not called");
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(
        send(&mut svc, from("192.0.2.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        send(&mut svc, from("192.0.2.1")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn headers_are_exact() {
    let layer = RateLimitLayer::memory(per_minute(10), KeyBy::Global)
        .policy_name("per-ip")
        .legacy_headers(true);
    let (mut svc, _) = service(layer);
    let response = send(&mut svc, Request::new(())).await;
    assert_eq!(
        response.headers()["ratelimit-policy"],
        "\"per-ip\";q=10;w=60"
    );
    assert_eq!(response.headers()["ratelimit"], "\"per-ip\";r=9;t=6");
    assert_eq!(response.headers()["x-ratelimit-limit"], "10");
    assert_eq!(response.headers()["x-ratelimit-remaining"], "9");
    assert_eq!(response.headers()["x-ratelimit-reset"], "6");

    let (mut quiet, _) =
        service(RateLimitLayer::memory(per_minute(10), KeyBy::Global).headers(false));
    let response = send(&mut quiet, Request::new(())).await;
    assert!(response.headers().get("ratelimit").is_none());
    assert!(response.headers().get("x-ratelimit-limit").is_none());
}

#[tokio::test(start_paused = true)]
async fn ips_are_isolated_and_ipv6_grouped_by_64() {
    let (mut svc, _) = service(RateLimitLayer::memory(per_minute(1), KeyBy::client_ip()));
    assert_eq!(
        send(&mut svc, from("192.0.2.1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, from("192.0.2.2")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, from("2001:db8:1:2::1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, from("2001:db8:1:2:ffff::9")).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "same /64"
    );
    assert_eq!(
        send(&mut svc, from("2001:db8:1:3::1")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn per_principal_and_per_tool_keys() {
    let with = |subject: &str, tool: Option<&str>| {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(Principal::builder(subject, AuthMethod::Jwt).build());
        request
            .extensions_mut()
            .insert(McpCall::new("tools/call", tool.map(str::to_owned)));
        request
    };
    let (mut by_sub, _) = service(RateLimitLayer::memory(per_minute(1), KeyBy::subject()));
    assert_eq!(
        send(&mut by_sub, with("alice", None)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut by_sub, with("bob", None)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut by_sub, with("alice", None)).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let (mut by_tool, _) = service(RateLimitLayer::memory(per_minute(1), KeyBy::Tool));
    assert_eq!(
        send(&mut by_tool, with("a", Some("search"))).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut by_tool, with("b", Some("fetch"))).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut by_tool, with("c", Some("search"))).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Not a tool call: passes uncounted.
    for _ in 0..3 {
        assert_eq!(
            send(&mut by_tool, with("c", None)).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_missing_key_passes() {
    let (mut svc, calls) = service(RateLimitLayer::memory(per_minute(1), KeyBy::subject()));
    for _ in 0..5 {
        let response = send(&mut svc, Request::new(())).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit").is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn grpc_requests_get_resource_exhausted() {
    let (mut svc, _) = service(RateLimitLayer::memory(per_minute(1), KeyBy::Global));
    let grpc = || {
        Request::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap()
    };
    send(&mut svc, grpc()).await;
    let response = send(&mut svc, grpc()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "8");
}

/// A store that always answers after a round trip.
struct Remote(MemoryStore);

impl Store for Remote {
    fn check(&self, key: &RateKey, quota: &Quota) -> NowOrLater<Allowance> {
        let decision = match self.0.check(key, quota) {
            NowOrLater::Now(d) => d,
            NowOrLater::Later(_) => unreachable!(),
        };
        NowOrLater::Later(Box::pin(async move {
            tokio::task::yield_now().await;
            decision
        }))
    }
}

#[tokio::test(start_paused = true)]
async fn pending_decisions_work() {
    let store = Arc::new(Remote(MemoryStore::new()));
    let (mut svc, calls) = service(RateLimitLayer::new(per_minute(1), KeyBy::Global, store));
    let admitted = send(&mut svc, Request::new(())).await;
    assert_eq!(admitted.status(), StatusCode::OK);
    assert_eq!(admitted.headers()["ratelimit"], "\"default\";r=0;t=60");
    let refused = send(&mut svc, Request::new(())).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "60");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn stacked_layers_each_add_an_item() {
    let inner =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut svc = tower::ServiceBuilder::new()
        .layer(RateLimitLayer::memory(per_minute(100), KeyBy::client_ip()).policy_name("ip"))
        .layer(RateLimitLayer::memory(per_minute(10), KeyBy::Global).policy_name("all"))
        .service(inner);
    let response = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.9"))
        .await
        .unwrap();
    let items: Vec<_> = response.headers().get_all("ratelimit").iter().collect();
    assert_eq!(items, ["\"all\";r=9;t=6", "\"ip\";r=99;t=1"]);
}

#[tokio::test(start_paused = true)]
async fn per_tool_quotas_count_each_caller_and_tool_apart() {
    let with = |subject: &str, tool: &str| {
        let mut request = Request::new(());
        request
            .extensions_mut()
            .insert(Principal::builder(subject, AuthMethod::Jwt).build());
        request
            .extensions_mut()
            .insert(McpCall::new("tools/call", Some(tool.to_owned())));
        request
    };
    let layer = RateLimitLayer::per_tool(
        [("search", per_minute(2)), ("fetch", per_minute(1))],
        KeyBy::subject(),
        Arc::new(MemoryStore::new()),
    );
    let (mut svc, calls) = service(layer);

    let first = send(&mut svc, with("alice", "search")).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()[RATELIMIT_POLICY], "\"search\";q=2;w=60");
    assert_eq!(first.headers()[RATELIMIT], "\"search\";r=1;t=30");
    assert_eq!(
        send(&mut svc, with("alice", "search")).await.status(),
        StatusCode::OK
    );
    let refused = send(&mut svc, with("alice", "search")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[http::header::RETRY_AFTER], "30");
    // Another tool, and another caller of the same tool, have their own.
    let fetch = send(&mut svc, with("alice", "fetch")).await;
    assert_eq!(fetch.status(), StatusCode::OK);
    assert_eq!(fetch.headers()[RATELIMIT_POLICY], "\"fetch\";q=1;w=60");
    assert_eq!(
        send(&mut svc, with("alice", "fetch")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&mut svc, with("bob", "search")).await.status(),
        StatusCode::OK
    );
    // Unlisted tools and other methods pass uncounted, without headers.
    for _ in 0..3 {
        let other = send(&mut svc, with("alice", "echo")).await;
        assert_eq!(other.status(), StatusCode::OK);
        assert!(other.headers().get(RATELIMIT).is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4 + 3);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        send(&mut svc, with("alice", "search")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn check_draws_on_the_same_allowance_as_requests() {
    let layer = RateLimitLayer::memory(per_minute(2), KeyBy::client_ip());
    let (mut svc, calls) = service(layer.clone());
    // One request through the service, one message checked directly.
    assert_eq!(
        send(&mut svc, from("192.0.2.1")).await.status(),
        StatusCode::OK
    );
    let admitted = layer.check(&from("192.0.2.1")).await.expect("counted");
    assert!(admitted.allowed);
    assert_eq!(admitted.remaining, 0);
    // Both used the allowance: the next request and message are refused.
    assert_eq!(
        send(&mut svc, from("192.0.2.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let refused = layer.check(&from("192.0.2.1")).await.expect("counted");
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Without a key nothing is counted.
    assert!(layer.check(&Request::new(())).await.is_none());
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(layer.check(&from("192.0.2.1")).await.unwrap().allowed);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_layer_builds_the_same_layer_as_new() {
    let (mut svc, calls) = service(RateLimit::layer(
        per_minute(1),
        KeyBy::Global,
        Arc::new(MemoryStore::new()),
    ));
    let admitted = send(&mut svc, Request::new(())).await;
    assert_eq!(admitted.status(), StatusCode::OK);
    assert_eq!(admitted.headers()["ratelimit"], "\"default\";r=0;t=60");
    let refused = send(&mut svc, Request::new(())).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
