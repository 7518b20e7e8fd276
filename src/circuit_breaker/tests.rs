use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::body::ResponseBody;

fn breaker(threshold: u32, reset_ms: u64) -> CircuitBreaker {
    CircuitBreaker::builder("test")
        .failure_threshold(threshold)
        .reset_timeout(Duration::from_millis(reset_ms))
        .build()
        .unwrap()
}

/// A service answering the statuses of `script` in turn (then 200),
/// counting its calls.
fn scripted(
    layer: CircuitBreakerLayer,
    script: Vec<u16>,
) -> (
    impl Service<Request<()>, Response = Response<ResponseBody<String>>, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let script = Arc::new(script);
    let inner = service_fn(move |_: Request<()>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let status = script.get(n).copied().unwrap_or(200);
        async move {
            let mut response = Response::new(String::new());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(response)
        }
    });
    (layer.layer(inner), calls)
}

async fn status<S>(svc: &mut S, request: Request<()>) -> (StatusCode, http::HeaderMap, String)
where
    S: Service<Request<()>, Response = Response<ResponseBody<String>>, Error = Infallible>,
{
    let response = svc.ready().await.unwrap().call(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_open_then_503_without_calling_then_half_open_closes() {
    let b = breaker(3, 1500);
    // fail, fail, ok (resets), fail ×3 → open
    let (mut svc, calls) = scripted(
        CircuitBreakerLayer::new(b.clone()),
        vec![500, 502, 200, 504, 500, 408],
    );
    for expected in [500, 502, 200, 504, 500] {
        assert_eq!(
            status(&mut svc, Request::new(())).await.0.as_u16(),
            expected
        );
        assert_eq!(b.state(), BreakerState::Closed);
    }
    assert_eq!(
        status(&mut svc, Request::new(())).await.0,
        StatusCode::REQUEST_TIMEOUT
    );
    assert!(matches!(b.state(), BreakerState::Open { .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 6);

    let (code, headers, body) = status(&mut svc, Request::new(())).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers[http::header::RETRY_AFTER], "2");
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "circuit_open");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        6,
        "an open breaker calls nothing"
    );
    assert_eq!(b.rejected(), 1);

    // gRPC callers read UNAVAILABLE.
    let mut grpc = Request::new(());
    grpc.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    assert_eq!(status(&mut svc, grpc).await.1["grpc-status"], "14");

    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(status(&mut svc, Request::new(())).await.0, StatusCode::OK);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 7);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_a_fresh_timeout() {
    let b = breaker(1, 1000);
    b.try_acquire().unwrap().failure();
    tokio::time::advance(Duration::from_millis(1000)).await;
    let probe = b.try_acquire().unwrap();
    // One probe at a time.
    assert!(b.try_acquire().is_err());
    probe.failure();
    match b.state() {
        BreakerState::Open { retry_after } => assert_eq!(retry_after, Duration::from_millis(1000)),
        other => panic!("{other:?}"),
    }
    tokio::time::advance(Duration::from_millis(999)).await;
    assert!(b.try_acquire().is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    b.try_acquire().unwrap().success();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot_and_counts_as_neither() {
    let b = breaker(1, 100);
    b.try_acquire().unwrap().failure();
    tokio::time::advance(Duration::from_millis(100)).await;
    drop(b.try_acquire().unwrap());
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let probe = b.try_acquire().expect("the slot is free again");
    probe.success();
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_opens_only_past_min_calls_and_old_buckets_expire() {
    let b = CircuitBreaker::builder("rate")
        .failure_threshold(100)
        .failure_rate(0.5, Duration::from_secs(10), 4)
        .build()
        .unwrap();
    // 1 ok, 2 failures: 3 calls < min 4 → closed.
    b.try_acquire().unwrap().success();
    b.try_acquire().unwrap().failure();
    b.try_acquire().unwrap().success();
    b.try_acquire().unwrap().failure();
    // 4 calls, 50% failed → open on the 4th failure check.
    assert!(
        matches!(b.state(), BreakerState::Open { .. }),
        "{:?}",
        b.state()
    );

    let b = CircuitBreaker::builder("rate2")
        .failure_threshold(100)
        .failure_rate(0.5, Duration::from_secs(10), 4)
        .build()
        .unwrap();
    b.try_acquire().unwrap().failure();
    b.try_acquire().unwrap().failure();
    b.try_acquire().unwrap().success();
    // The window moves on: those three are forgotten.
    tokio::time::advance(Duration::from_secs(11)).await;
    for _ in 0..3 {
        b.try_acquire().unwrap().success();
    }
    b.try_acquire().unwrap().failure();
    assert_eq!(b.state(), BreakerState::Closed, "1 failure in 4");
}

#[tokio::test]
async fn inner_errors_count_and_a_classifier_overrides() {
    let b = breaker(1, 60_000);
    let layer = CircuitBreakerLayer::new(b.clone());
    let mut svc = layer.layer(service_fn(|_: Request<()>| async {
        Err::<Response<String>, _>(std::io::Error::other("down"))
    }));
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .is_err()
    );
    assert!(matches!(b.state(), BreakerState::Open { .. }));

    // 404 and 429 are not failures by default; this classifier says 404 is.
    let b = breaker(1, 60_000);
    let (mut svc, _) = scripted(BreakCircuit::layer(b.clone()), vec![429, 404]);
    status(&mut svc, Request::new(())).await;
    status(&mut svc, Request::new(())).await;
    assert_eq!(b.state(), BreakerState::Closed);
    let b = breaker(1, 60_000);
    let layer = CircuitBreakerLayer::new(b.clone()).classify(|outcome| {
        matches!(outcome, Outcome::Response { status, .. } if status == StatusCode::NOT_FOUND)
    });
    let (mut svc, _) = scripted(layer, vec![500, 404]);
    status(&mut svc, Request::new(())).await;
    assert_eq!(b.state(), BreakerState::Closed, "500 is fine by this rule");
    status(&mut svc, Request::new(())).await;
    assert!(matches!(b.state(), BreakerState::Open { .. }));
}

#[test]
fn bad_settings_are_config_errors() {
    for (builder, setting) in [
        (
            CircuitBreaker::builder("x").failure_threshold(0),
            "failure_threshold",
        ),
        (
            CircuitBreaker::builder("x").reset_timeout(Duration::ZERO),
            "reset_timeout",
        ),
        (
            CircuitBreaker::builder("x").half_open_probes(0),
            "half_open_probes",
        ),
        (
            CircuitBreaker::builder("x").failure_rate(1.5, Duration::from_secs(1), 1),
            "failure_rate",
        ),
        (
            CircuitBreaker::builder("x").failure_rate(f64::NAN, Duration::from_secs(1), 1),
            "failure_rate",
        ),
        (
            CircuitBreaker::builder("x").failure_rate(0.5, Duration::ZERO, 1),
            "failure_rate",
        ),
        (
            CircuitBreaker::builder("x").failure_rate(0.5, Duration::from_secs(1), 0),
            "failure_rate",
        ),
    ] {
        assert_eq!(builder.build().unwrap_err().setting(), setting);
    }
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_are_independent_and_listed() {
    let breakers =
        CircuitBreakers::new(CircuitBreaker::builder("up").failure_threshold(1)).unwrap();
    breakers.get_or_insert("b").try_acquire().unwrap().failure();
    breakers.get_or_insert("a").try_acquire().unwrap().success();
    let states = breakers.states();
    assert_eq!(states[0], ("a".to_owned(), BreakerState::Closed));
    assert_eq!(states[1].0, "b");
    assert_eq!(states[1].1.as_str(), "open");
    assert_eq!(breakers.get_or_insert("b").name(), "up:b");
    breakers.remove("b");
    assert_eq!(breakers.states().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_transition_is_logged_once() {
    crate::testing::start();
    let b = CircuitBreaker::builder("logged-breaker-7f3a")
        .failure_threshold(1)
        .reset_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    b.try_acquire().unwrap().failure();
    for _ in 0..5 {
        assert!(b.try_acquire().is_err());
    }
    tokio::time::advance(Duration::from_millis(10)).await;
    b.try_acquire().unwrap().success();
    let lines = crate::testing::lines_with("logged-breaker-7f3a");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].contains("open"));
    assert!(lines[1].contains("half-open"));
    assert!(lines[2].contains("closed"));
}
