use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

use super::*;
use crate::reject::Rejection;

/// What the inner service received.
type Seen = Arc<Mutex<Vec<Bytes>>>;

async fn send(
    layer: &SignatureLayer,
    request: Request<Full<Bytes>>,
    seen: &Seen,
) -> Response<Bytes> {
    let seen = Arc::clone(seen);
    let service = ServiceBuilder::new().layer(layer.clone()).service_fn(
        move |request: Request<Full<Bytes>>| {
            let seen = Arc::clone(&seen);
            async move {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                seen.lock().unwrap().push(body);
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"done"))))
            }
        },
    );
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

fn detail(response: &Response<Bytes>) -> String {
    response
        .extensions()
        .get::<Rejection>()
        .map(|r| r.detail().to_owned())
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn github(signature: Option<&str>, body: &'static [u8]) -> Request<Full<Bytes>> {
    let mut request = Request::post("/hooks");
    if let Some(signature) = signature {
        request = request.header(X_HUB_SIGNATURE_256, signature);
    }
    request.body(Full::new(Bytes::from_static(body))).unwrap()
}

#[tokio::test]
async fn github_signatures_by_any_configured_secret_pass_with_the_body_unchanged() {
    let layer = SignatureLayer::github(["new-secret", "old-secret"]).unwrap();
    let seen = Seen::default();
    let body = br#"{"action":"opened"}"#;
    for secret in ["new-secret", "old-secret"] {
        let signature = format!("sha256={}", hex(&mac(secret.as_bytes(), &[body])));
        let reply = send(&layer, github(Some(&signature), body), &seen).await;
        assert_eq!(reply.status(), StatusCode::OK, "{secret}");
        assert_eq!(reply.body(), "done");
    }
    assert_eq!(seen.lock().unwrap().as_slice(), [&body[..], &body[..]]);
}

#[tokio::test]
async fn forged_missing_and_malformed_github_signatures_never_reach_the_service() {
    let layer = SignatureLayer::github(["secret"]).unwrap();
    let seen = Seen::default();
    let body = b"payload";
    let good = format!("sha256={}", hex(&mac(b"secret", &[body])));
    let other_key = format!("sha256={}", hex(&mac(b"guess", &[body])));
    let other_body = format!("sha256={}", hex(&mac(b"secret", &[b"payload!"])));
    let upper = good.to_uppercase().replace("SHA256=", "sha256=");
    for (signature, why) in [
        (None, "not signed"),
        (Some(other_key.as_str()), "does not match"),
        (Some(other_body.as_str()), "does not match"),
        (Some("sha256=00"), "64 hex digits"),
        (Some(&good[7..]), "64 hex digits"),
        (
            Some("sha1=0123456789abcdef0123456789abcdef01234567"),
            "64 hex digits",
        ),
    ] {
        let reply = send(&layer, github(signature, body), &seen).await;
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED, "{signature:?}");
        assert!(
            detail(&reply).contains(why),
            "{signature:?}: {}",
            detail(&reply)
        );
        let problem: serde_json::Value = serde_json::from_slice(reply.body()).unwrap();
        assert_eq!(problem["code"], "invalid_credentials");
    }
    // Hex digits in either case are the same signature.
    assert_eq!(
        send(&layer, github(Some(&upper), body), &seen)
            .await
            .status(),
        StatusCode::OK
    );
    // Two signature headers: refused, whichever is right.
    let mut twice = github(Some(&good), body);
    twice
        .headers_mut()
        .append(X_HUB_SIGNATURE_256, HeaderValue::from_static("sha256=00"));
    assert_eq!(
        send(&layer, twice, &seen).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn bodies_over_the_cap_are_413_declared_or_streamed() {
    let layer = SignatureLayer::github(["secret"])
        .unwrap()
        .max_body_bytes(16);
    let seen = Seen::default();
    let big = &[b'x'; 17];
    let signature = format!("sha256={}", hex(&mac(b"secret", &[big])));
    let reply = send(&layer, github(Some(&signature), big), &seen).await;
    assert_eq!(reply.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked, no length declared: cut while reading.
    let chunks =
        futures::stream::iter((0..3).map(|_| Ok::<_, Infallible>(Bytes::from_static(&[b'x'; 10]))));
    let request = Request::post("/hooks")
        .header(X_HUB_SIGNATURE_256, signature.as_str())
        .body(axum::body::Body::from_stream(chunks))
        .unwrap();
    let service = ServiceBuilder::new().layer(layer.clone()).service_fn(
        |_: Request<axum::body::Body>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        },
    );
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(seen.lock().unwrap().is_empty());
}

/// A clock the test moves, in Unix seconds.
fn clock(
    start: u64,
) -> (
    Arc<AtomicU64>,
    impl Fn() -> SystemTime + Send + Sync + 'static,
) {
    let now = Arc::new(AtomicU64::new(start));
    let read = Arc::clone(&now);
    (now, move || {
        UNIX_EPOCH + Duration::from_secs(read.load(Ordering::SeqCst))
    })
}

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn standard(
    id: &str,
    timestamp: u64,
    signatures: &str,
    body: &'static [u8],
) -> Request<Full<Bytes>> {
    Request::post("/hooks")
        .header(WEBHOOK_ID, id)
        .header(WEBHOOK_TIMESTAMP, timestamp.to_string())
        .header(WEBHOOK_SIGNATURE, signatures)
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

fn v1(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let stamp = timestamp.to_string();
    let mac = mac(key, &[id.as_bytes(), b".", stamp.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(mac))
}

#[tokio::test]
async fn standard_webhooks_are_refused_when_late_early_replayed_or_forged() {
    let secret = format!("whsec_{}", STANDARD.encode(KEY));
    let (now, read) = clock(1_700_000_000);
    let layer = SignatureLayer::standard([secret.as_str()])
        .unwrap()
        .tolerance(Duration::from_secs(300))
        .clock(read);
    let seen = Seen::default();
    let body = br#"{"type":"invoice.paid"}"#;
    let t = 1_700_000_000;

    // Valid, among other signatures (a sender rotating its secret).
    let signatures = format!("v1,AAAA {} v2,whatever", v1(KEY, "msg_1", t, body));
    let reply = send(&layer, standard("msg_1", t, &signatures, body), &seen).await;
    assert_eq!(reply.status(), StatusCode::OK, "{}", detail(&reply));

    // The same delivery again: replayed.
    let reply = send(&layer, standard("msg_1", t, &signatures, body), &seen).await;
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert!(
        detail(&reply).contains("already received"),
        "{}",
        detail(&reply)
    );

    // Late and early, correctly signed.
    for stamp in [t - 301, t + 301] {
        let reply = send(
            &layer,
            standard("msg_2", stamp, &v1(KEY, "msg_2", stamp, body), body),
            &seen,
        )
        .await;
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED, "{stamp}");
        assert!(detail(&reply).contains("tolerance"), "{}", detail(&reply));
    }
    // At the edge of the window: accepted.
    let reply = send(
        &layer,
        standard("msg_3", t - 300, &v1(KEY, "msg_3", t - 300, body), body),
        &seen,
    )
    .await;
    assert_eq!(reply.status(), StatusCode::OK);

    // Forged: another key, another id, another timestamp, another body.
    for signature in [
        v1(b"another key of thirty-two bytes!", "msg_4", t, body),
        v1(KEY, "msg_x", t, body),
        v1(KEY, "msg_4", t + 1, body),
        v1(KEY, "msg_4", t, b"{}"),
    ] {
        let reply = send(&layer, standard("msg_4", t, &signature, body), &seen).await;
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED, "{signature}");
        assert!(
            detail(&reply).contains("does not match"),
            "{}",
            detail(&reply)
        );
    }
    // A refused delivery's id is not spent: signed right, it passes.
    let reply = send(
        &layer,
        standard("msg_4", t, &v1(KEY, "msg_4", t, body), body),
        &seen,
    )
    .await;
    assert_eq!(reply.status(), StatusCode::OK);

    // Malformed headers.
    for request in [
        standard("msg.5", t, &v1(KEY, "msg.5", t, body), body),
        standard("msg_5", t, "v1,not base64!", body),
        standard("msg_5", t, "v2,abc", body),
    ] {
        let reply = send(&layer, request, &seen).await;
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    }
    let mut no_stamp = standard("msg_5", t, &v1(KEY, "msg_5", t, body), body);
    no_stamp.headers_mut().remove(WEBHOOK_TIMESTAMP);
    assert_eq!(
        send(&layer, no_stamp, &seen).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Long after: the old delivery is too old rather than remembered.
    now.store(t + 10_000, Ordering::SeqCst);
    let reply = send(&layer, standard("msg_1", t, &signatures, body), &seen).await;
    assert!(detail(&reply).contains("tolerance"), "{}", detail(&reply));
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn a_memory_full_of_live_deliveries_refuses_with_503_and_forgets_none() {
    let (now, read) = clock(1_700_000_000);
    let layer = SignatureLayer::standard([STANDARD.encode(KEY)])
        .unwrap()
        .replay_capacity(16)
        .clock(read);
    let seen = Seen::default();
    let t = 1_700_000_000;
    let body = b"{}";
    let mut refused = 0;
    let mut accepted_ids = Vec::new();
    for i in 0..64 {
        let id = format!("msg_{i}");
        let reply = send(
            &layer,
            standard(&id, t, &v1(KEY, &id, t, body), body),
            &seen,
        )
        .await;
        match reply.status() {
            StatusCode::OK => accepted_ids.push(id),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(reply.headers().contains_key(RETRY_AFTER));
                refused += 1;
            }
            other => panic!("{other}"),
        }
    }
    assert!(refused > 0, "the memory is bounded");
    let accepted = seen.lock().unwrap().len();
    assert_eq!(accepted + refused, 64);
    // None was forgotten to make room: every accepted one is still a replay.
    for id in &accepted_ids {
        let reply = send(&layer, standard(id, t, &v1(KEY, id, t, body), body), &seen).await;
        assert_eq!(reply.status(), StatusCode::UNAUTHORIZED, "{id}");
        assert!(
            detail(&reply).contains("already received"),
            "{}",
            detail(&reply)
        );
    }
    // Once the window has passed, room is made again.
    now.store(t + 400, Ordering::SeqCst);
    let reply = send(
        &layer,
        standard("late", t + 400, &v1(KEY, "late", t + 400, body), body),
        &seen,
    )
    .await;
    assert_eq!(reply.status(), StatusCode::OK);
}

#[test]
fn secrets_are_checked_when_the_layer_is_built() {
    assert!(SignatureLayer::github(Vec::<&str>::new()).is_err());
    assert!(SignatureLayer::github([""]).is_err());
    assert!(SignatureLayer::standard(["whsec_not base64!"]).is_err());
    assert!(SignatureLayer::standard(["whsec_"]).is_err());
    assert!(SignatureLayer::standard([format!("whsec_{}", STANDARD.encode(KEY))]).is_ok());
    let layer = SignatureLayer::new(SignatureScheme::GitHub, ["a", "b"]).unwrap();
    assert_eq!(layer.scheme(), SignatureScheme::GitHub);
    assert!(
        !format!("{layer:?}").contains("\"a\""),
        "secrets never printed"
    );
}
