use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};

use super::*;
use crate::reject::{DefaultResponder, Reason};

/// Who the request says it is, left in its extensions when admitted.
#[derive(Clone, Debug, PartialEq)]
struct User(String);

/// `x-user: <name>` is decided now, `x-later: <name>` after a yield; an
/// empty name is refused; a request with neither passes untouched.
/// Admitted responses carry `x-seen: <name>`.
#[derive(Clone)]
struct ByHeader;

impl AsyncCheck for ByHeader {
    type Responder = DefaultResponder;
    type Outcome = String;
    type Memo = &'static str;
    type Admitted = String;

    fn decide<B>(&self, request: &Request<B>) -> Option<(&'static str, NowOrLater<String>)> {
        let value = |name| {
            request
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        if let Some(name) = value("x-user") {
            return Some(("now", NowOrLater::Now(name)));
        }
        let name = value("x-later")?;
        Some((
            "later",
            NowOrLater::Later(Box::pin(async move {
                tokio::task::yield_now().await;
                name
            })),
        ))
    }

    fn apply<B>(
        &self,
        memo: &'static str,
        name: String,
        request: &mut Request<B>,
    ) -> Result<String, Rejection> {
        if name.is_empty() {
            return Err(Rejection::new(Reason::Unauthenticated).with_detail(memo));
        }
        request.extensions_mut().insert(User(name.clone()));
        Ok(format!("{name}/{memo}"))
    }

    fn on_response(seen: String, headers: &mut HeaderMap) {
        headers.insert("x-seen", HeaderValue::try_from(seen).unwrap());
    }

    fn responder(&self) -> &DefaultResponder {
        &DefaultResponder
    }
}

/// An inner service that answers with the `User` it was given (or `-`)
/// and counts its calls and its clones.
#[derive(Default)]
struct Inner {
    calls: Arc<AtomicUsize>,
    clones: Arc<AtomicUsize>,
}

impl Clone for Inner {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Self {
            calls: Arc::clone(&self.calls),
            clones: Arc::clone(&self.clones),
        }
    }
}

impl Service<Request<()>> for Inner {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let user = request
            .extensions()
            .get::<User>()
            .map_or_else(|| "-".to_owned(), |u| u.0.clone());
        std::future::ready(Ok(Response::new(user)))
    }
}

fn with(header: &str, value: &str) -> Request<()> {
    Request::builder().header(header, value).body(()).unwrap()
}

async fn send(
    service: &mut AsyncGuard<Inner, ByHeader>,
    request: Request<()>,
) -> (StatusCode, Option<String>, String) {
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let status = response.status();
    let seen = response
        .headers()
        .get("x-seen")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, seen, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_decision_made_now_admits_annotates_and_adds_headers_without_a_clone() {
    let inner = Inner::default();
    let (calls, clones) = (Arc::clone(&inner.calls), Arc::clone(&inner.clones));
    let mut service = AsyncGuard::new(inner, ByHeader);
    let (status, seen, body) = send(&mut service, with("x-user", "alice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "alice");
    assert_eq!(seen.as_deref(), Some("alice/now"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        clones.load(Ordering::SeqCst),
        0,
        "the fast path clones nothing"
    );
}

#[tokio::test]
async fn a_pending_decision_admits_with_the_ready_service_and_leaves_a_clone() {
    let inner = Inner::default();
    let (calls, clones) = (Arc::clone(&inner.calls), Arc::clone(&inner.clones));
    let mut service = AsyncGuard::new(inner, ByHeader);
    let (status, seen, body) = send(&mut service, with("x-later", "bob")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "bob");
    assert_eq!(seen.as_deref(), Some("bob/later"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(clones.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refusals_now_and_later_never_call_the_inner_service() {
    let inner = Inner::default();
    let calls = Arc::clone(&inner.calls);
    let mut service = AsyncGuard::new(inner, ByHeader);
    for (header, memo) in [("x-user", "now"), ("x-later", "later")] {
        let (status, seen, body) = send(&mut service, with(header, "")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(seen, None);
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["code"], "unauthenticated");
        assert_eq!(problem["detail"], memo);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_request_the_rule_does_not_concern_passes_untouched() {
    let mut service = AsyncGuard::new(Inner::default(), ByHeader);
    let (status, seen, body) = send(&mut service, Request::new(())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "-");
    assert_eq!(seen, None);
}

#[tokio::test]
async fn now_or_later_resolves_either_way() {
    assert_eq!(NowOrLater::Now(1).resolve().await, 1);
    let later: NowOrLater<i32> = NowOrLater::Later(Box::pin(async { 2 }));
    assert_eq!(later.resolve().await, 2);
    assert_eq!(format!("{:?}", NowOrLater::Now(3)), "Now(3)");
}
