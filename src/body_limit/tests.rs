use std::convert::Infallible;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{BoxError, ServiceBuilder, ServiceExt};

use super::BodyLimitLayer;
use crate::reject::{Reason, Rejection};

#[path = "../../tests/support/chunks.rs"]
mod chunks;
use chunks::Chunks;

#[derive(Clone, Copy)]
enum Handler {
    /// Reads the body; on error answers 400 like a typical handler.
    ReadOr400,
    /// Reads the body and ignores any error, answering 200.
    Swallow,
    /// Never reads the body.
    Ignore,
}

struct Outcome {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
    calls: usize,
    seen: Option<Bytes>,
    rejection: Option<Rejection>,
}

async fn run<B>(limit: u64, handler: Handler, request: Request<B>) -> Outcome
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(None));
    let (c, s) = (calls.clone(), seen.clone());
    let service = ServiceBuilder::new()
        .layer(BodyLimitLayer::new(limit))
        .service_fn(move |req: Request<super::LimitedBody<B>>| {
            c.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            async move {
                let status = match handler {
                    Handler::Ignore => StatusCode::OK,
                    Handler::ReadOr400 | Handler::Swallow => {
                        match req.into_body().collect().await {
                            Ok(collected) => {
                                *s.lock().unwrap() = Some(collected.to_bytes());
                                StatusCode::OK
                            }
                            Err(_) if matches!(handler, Handler::Swallow) => StatusCode::OK,
                            Err(_) => StatusCode::BAD_REQUEST,
                        }
                    }
                };
                let mut response = Response::new(Full::new(Bytes::from_static(b"handler")));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        });
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let rejection = response.extensions().get::<Rejection>().cloned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen = seen.lock().unwrap().take();
    Outcome {
        status,
        headers,
        body,
        calls: calls.load(Ordering::SeqCst),
        seen,
        rejection,
    }
}

fn assert_413(outcome: &Outcome) {
    assert_eq!(outcome.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(outcome.headers["content-type"], "application/problem+json");
    let json: serde_json::Value = serde_json::from_slice(&outcome.body).unwrap();
    assert_eq!(json["code"], "payload_too_large");
    assert_eq!(json["status"], 413);
    assert_eq!(
        outcome.rejection.as_ref().map(Rejection::reason),
        Some(Reason::PayloadTooLarge)
    );
}

#[tokio::test]
async fn bodies_within_the_cap_reach_the_handler_intact() {
    let request = Request::builder()
        .header("content-length", "10")
        .body(Full::new(Bytes::from_static(b"0123456789")))
        .unwrap();
    let outcome = run(10, Handler::ReadOr400, request).await;
    assert_eq!(outcome.status, StatusCode::OK);
    assert_eq!(outcome.seen.as_deref(), Some(&b"0123456789"[..]));
    assert_eq!(outcome.body, "handler");
    assert!(outcome.rejection.is_none());

    let streamed = run(
        10,
        Handler::ReadOr400,
        Request::new(Chunks::new(&[4, 4, 2])),
    )
    .await;
    assert_eq!(streamed.status, StatusCode::OK);
    assert_eq!(streamed.seen.map(|b| b.len()), Some(10));
}

#[tokio::test]
async fn declared_length_over_the_cap_is_refused_before_the_handler() {
    let request = Request::builder()
        .header("content-length", "11")
        .body(Chunks::new(&[11]))
        .unwrap();
    let outcome = run(10, Handler::ReadOr400, request).await;
    assert_413(&outcome);
    assert_eq!(outcome.calls, 0);
    assert_eq!(outcome.headers["connection"], "close");
}

#[tokio::test]
async fn known_body_size_over_the_cap_is_refused_before_the_handler() {
    let outcome = run(
        10,
        Handler::ReadOr400,
        Request::new(Full::new(Bytes::from(vec![0; 11]))),
    )
    .await;
    assert_413(&outcome);
    assert_eq!(outcome.calls, 0);
}

#[tokio::test]
async fn attack_chunked_body_over_the_cap_gets_413_whatever_the_handler_answers() {
    for handler in [Handler::ReadOr400, Handler::Swallow] {
        let outcome = run(10, handler, Request::new(Chunks::new(&[4, 4, 4, 4]))).await;
        assert_413(&outcome);
        assert_eq!(outcome.calls, 1);
        assert_eq!(outcome.headers["connection"], "close");
        assert!(
            outcome.seen.is_none(),
            "the handler never got the whole body"
        );
    }
}

#[tokio::test]
async fn attack_lying_content_length_is_caught_while_streaming() {
    let request = Request::builder()
        .header("content-length", "5")
        .body(Chunks::new(&[5, 5, 5]))
        .unwrap();
    let outcome = run(10, Handler::ReadOr400, request).await;
    assert_413(&outcome);
}

#[tokio::test]
async fn handlers_that_never_read_are_answered_normally() {
    let outcome = run(10, Handler::Ignore, Request::new(Chunks::new(&[64]))).await;
    assert_eq!(outcome.status, StatusCode::OK);
    assert_eq!(outcome.calls, 1);
}

#[tokio::test]
async fn grpc_and_http2_overflows() {
    let request = Request::builder()
        .version(Version::HTTP_2)
        .header("content-type", "application/grpc")
        .body(Chunks::new(&[8, 8]))
        .unwrap();
    let outcome = run(10, Handler::ReadOr400, request).await;
    assert_eq!(outcome.status, StatusCode::OK);
    assert_eq!(outcome.headers["grpc-status"], "8");
    assert!(
        !outcome.headers.contains_key("connection"),
        "HTTP/2 forbids connection headers"
    );
    assert_eq!(
        outcome.rejection.map(|r| r.reason()),
        Some(Reason::PayloadTooLarge)
    );
}
