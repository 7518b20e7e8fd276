use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::header::MCP_SESSION_ID;
use super::layer::SessionBindingLayer;
use super::service::SessionBinding;
use super::table::{Caller, Lookup, SHARDS, SWEEP_PER_OPERATION, Table};
use super::{DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_SESSIONS};
use crate::audit;
use crate::body::ResponseBody;
use crate::principal::{AuthMethod, Principal};
use crate::reject::{self, Reason, Rejection};

/// A clock the test moves by hand.
#[derive(Clone)]
struct TestClock {
    start: Instant,
    millis: Arc<AtomicU64>,
}

impl TestClock {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            millis: Arc::default(),
        }
    }

    fn advance(&self, by: Duration) {
        let millis = u64::try_from(by.as_millis()).unwrap();
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }

    fn install<R>(&self, layer: SessionBindingLayer<R>) -> SessionBindingLayer<R> {
        let clock = self.clone();
        layer
            .clock(move || clock.start + Duration::from_millis(clock.millis.load(Ordering::SeqCst)))
    }
}

/// Stands in for an MCP server: a request without a session id opens
/// session `s-<n>` (with the status in `x-status`, 200 by default), a
/// `DELETE` answers 202, a session in `x-forget` is answered 404, anything
/// else 200.
#[derive(Clone, Default)]
struct FakeServer {
    calls: Arc<AtomicUsize>,
    issued: Arc<AtomicUsize>,
}

impl FakeServer {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn layered(
        &self,
        layer: &SessionBindingLayer,
    ) -> SessionBinding<
        impl Service<
            Request<Full<Bytes>>,
            Response = Response<Full<Bytes>>,
            Error = std::convert::Infallible,
        > + Clone,
    > {
        let server = self.clone();
        let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
            let server = server.clone();
            async move {
                server.calls.fetch_add(1, Ordering::SeqCst);
                let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                let session = request.headers().get(MCP_SESSION_ID);
                match session {
                    None => {
                        let n = server.issued.fetch_add(1, Ordering::SeqCst) + 1;
                        let id = HeaderValue::from_str(&format!("sid-{n:04}-x7q")).unwrap();
                        response.headers_mut().insert(MCP_SESSION_ID, id);
                        if let Some(status) = request.headers().get("x-status") {
                            *response.status_mut() =
                                StatusCode::from_bytes(status.as_bytes()).unwrap();
                        }
                    }
                    Some(id) if request.headers().get("x-forget") == Some(id) => {
                        *response.status_mut() = StatusCode::NOT_FOUND;
                    }
                    Some(_) if request.method() == Method::DELETE => {
                        *response.status_mut() = StatusCode::ACCEPTED;
                    }
                    Some(_) => {}
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        ServiceBuilder::new().layer(layer.clone()).service(inner)
    }
}

fn jwt(subject: &str) -> Principal {
    Principal::builder(subject, AuthMethod::Jwt).build()
}

fn request(
    method: Method,
    principal: Option<&Principal>,
    sessions: &[&str],
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri("/mcp");
    for session in sessions {
        builder = builder.header(MCP_SESSION_ID, *session);
    }
    let mut request = builder.body(Full::new(Bytes::new())).unwrap();
    if let Some(principal) = principal {
        request.extensions_mut().insert(principal.clone());
    }
    request
}

/// The services the tests send to: a [`SessionBinding`] around a stand-in
/// server.
trait Layered:
    Service<
        Request<Full<Bytes>>,
        Response = Response<ResponseBody<Full<Bytes>>>,
        Error = std::convert::Infallible,
    > + Clone
{
}

impl<S> Layered for S where
    S: Service<
            Request<Full<Bytes>>,
            Response = Response<ResponseBody<Full<Bytes>>>,
            Error = std::convert::Infallible,
        > + Clone
{
}

async fn send<S: Layered>(
    service: &S,
    request: Request<Full<Bytes>>,
) -> Response<ResponseBody<Full<Bytes>>> {
    service.clone().oneshot(request).await.unwrap()
}

/// Opens a session as `principal`; returns its id.
async fn initialize<S: Layered>(service: &S, principal: Option<&Principal>) -> String {
    let response = send(service, request(Method::POST, principal, &[])).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.headers()[MCP_SESSION_ID]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn status<S: Layered>(
    service: &S,
    method: Method,
    principal: Option<&Principal>,
    session: &str,
) -> u16 {
    send(service, request(method, principal, &[session]))
        .await
        .status()
        .as_u16()
}

/// The status of a `POST` in `session` as `principal`.
async fn post_status<S: Layered>(service: &S, principal: Option<&Principal>, session: &str) -> u16 {
    status(service, Method::POST, principal, session).await
}

/// Asserts that `response` is the layer's own 404.
async fn assert_session_not_found(response: Response<ResponseBody<Full<Bytes>>>) {
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let rejection = response.extensions().get::<Rejection>().unwrap();
    assert_eq!(rejection.reason(), Reason::SessionNotFound);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    assert!(response.body().is_rejection());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "session_not_found");
    assert_eq!(problem["status"], 404);
}

#[tokio::test]
async fn initialize_binds_the_session_to_its_caller() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let alice = jwt("alice");
    assert!(layer.sessions().is_empty());

    let session = initialize(&service, Some(&alice)).await;
    assert_eq!(layer.sessions().len(), 1);
    for method in [Method::POST, Method::GET] {
        assert_eq!(status(&service, method, Some(&alice), &session).await, 200);
    }
    assert_eq!(server.calls(), 3);
}

#[tokio::test]
async fn another_principal_is_answered_404_without_reaching_the_server() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let session = initialize(&service, Some(&jwt("alice"))).await;
    let calls = server.calls();

    for method in [Method::POST, Method::GET, Method::DELETE] {
        let response = send(&service, request(method, Some(&jwt("bob")), &[&session])).await;
        assert_session_not_found(response).await;
    }
    assert_eq!(server.calls(), calls, "the server was not called");
    // bob's DELETE did not end alice's session.
    assert_eq!(
        post_status(&service, Some(&jwt("alice")), &session).await,
        200
    );
}

#[tokio::test]
async fn unknown_sessions_are_refused_before_the_server() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let alice = jwt("alice");

    let response = send(&service, request(Method::POST, Some(&alice), &["forged"])).await;
    assert_session_not_found(response).await;
    let response = send(&service, request(Method::POST, None, &["forged"])).await;
    assert_session_not_found(response).await;
    // A value that is not visible ASCII is unknown too.
    let mut odd = request(Method::POST, Some(&alice), &[]);
    odd.headers_mut()
        .insert(MCP_SESSION_ID, HeaderValue::from_bytes(b"s-\xff").unwrap());
    assert_session_not_found(send(&service, odd).await).await;
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn a_failed_initialize_binds_nothing() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let alice = jwt("alice");

    for failure in ["400", "500", "302"] {
        let mut failed = request(Method::POST, Some(&alice), &[]);
        failed
            .headers_mut()
            .insert("x-status", HeaderValue::from_static(failure));
        let response = send(&service, failed).await;
        assert_eq!(response.status().as_str(), failure);
        let session = response.headers()[MCP_SESSION_ID]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(post_status(&service, Some(&alice), &session).await, 404);
    }
    assert!(layer.sessions().is_empty());
}

#[tokio::test]
async fn the_owners_delete_removes_the_binding() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let alice = jwt("alice");
    let session = initialize(&service, Some(&alice)).await;
    let other = initialize(&service, Some(&alice)).await;
    assert_eq!(layer.sessions().len(), 2);

    assert_eq!(
        status(&service, Method::DELETE, Some(&alice), &session).await,
        202
    );
    assert_eq!(layer.sessions().len(), 1);
    let calls = server.calls();
    assert_eq!(post_status(&service, Some(&alice), &session).await, 404);
    assert_eq!(server.calls(), calls);
    assert_eq!(post_status(&service, Some(&alice), &other).await, 200);
}

#[tokio::test]
async fn a_404_from_the_server_drops_the_binding() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let alice = jwt("alice");
    let session = initialize(&service, Some(&alice)).await;

    let mut forgotten = request(Method::POST, Some(&alice), &[&session]);
    forgotten
        .headers_mut()
        .insert("x-forget", HeaderValue::from_str(&session).unwrap());
    let response = send(&service, forgotten).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.extensions().get::<Rejection>().is_none());
    assert!(layer.sessions().is_empty());
}

#[tokio::test]
async fn idle_bindings_expire_and_use_refreshes_them() {
    let clock = TestClock::new();
    let layer = clock.install(SessionBindingLayer::new().idle_timeout(Duration::from_secs(60)));
    assert_eq!(layer.sessions().idle_timeout(), Duration::from_secs(60));
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let alice = jwt("alice");
    let kept = initialize(&service, Some(&alice)).await;
    let idle = initialize(&service, Some(&alice)).await;

    // Each use restarts the idle timer.
    for _ in 0..3 {
        clock.advance(Duration::from_secs(45));
        assert_eq!(post_status(&service, Some(&alice), &kept).await, 200);
    }
    // `idle` has not been used for 135 s: refused, and its binding removed.
    let calls = server.calls();
    assert_eq!(post_status(&service, Some(&alice), &idle).await, 404);
    assert_eq!(server.calls(), calls);
    assert_eq!(layer.sessions().len(), 1);

    clock.advance(Duration::from_secs(60));
    assert_eq!(post_status(&service, Some(&alice), &kept).await, 404);
    assert!(layer.sessions().is_empty());
}

#[tokio::test]
async fn a_full_table_evicts_the_least_recently_used_binding() {
    let clock = TestClock::new();
    let layer = clock.install(SessionBindingLayer::new().max_sessions(2));
    assert_eq!(layer.sessions().max_sessions(), 2);
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let alice = jwt("alice");
    let first = initialize(&service, Some(&alice)).await;
    let second = initialize(&service, Some(&alice)).await;
    clock.advance(Duration::from_secs(1));
    assert_eq!(post_status(&service, Some(&alice), &first).await, 200);

    // A new session is always admitted; `second` was used least recently.
    let third = initialize(&service, Some(&jwt("bob"))).await;
    assert_eq!(layer.sessions().len(), 2);
    assert_eq!(post_status(&service, Some(&alice), &second).await, 404);
    assert_eq!(post_status(&service, Some(&alice), &first).await, 200);
    assert_eq!(post_status(&service, Some(&jwt("bob")), &third).await, 200);
}

#[test]
fn sharded_tables_stay_within_their_bound() {
    let table = Table::new(5000, DEFAULT_IDLE_TIMEOUT, Arc::new(Instant::now));
    assert_eq!(table.shards.len(), SHARDS);
    let owner = Caller::of(None).to_owner();
    for n in 0..6000 {
        table.bind(&format!("session-{n}"), owner.clone());
    }
    let len = table.len();
    assert!(len <= 5000 && len > 4500, "{len}");
    // The latest binding is never the one evicted.
    assert!(matches!(
        table.lookup("session-5999", Caller::of(None)),
        Lookup::Owner(_)
    ));

    let tiny = Table::new(0, DEFAULT_IDLE_TIMEOUT, Arc::new(Instant::now));
    tiny.bind("a", owner.clone());
    tiny.bind("b", owner);
    assert_eq!(tiny.len(), 1);
}

#[tokio::test]
async fn a_refreshed_token_keeps_its_sessions() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let before = Principal::builder("alice", AuthMethod::Jwt)
        .namespace("acme")
        .scopes(["tools:echo"])
        .key_id("k1")
        .expires_at_unix(1_000)
        .build();
    let after = Principal::builder("alice", AuthMethod::Jwt)
        .namespace("acme")
        .scopes(["tools:*"])
        .key_id("k2")
        .expires_at_unix(2_000)
        .build();
    let session = initialize(&service, Some(&before)).await;
    assert_eq!(post_status(&service, Some(&after), &session).await, 200);
}

#[tokio::test]
async fn method_subject_and_namespace_make_the_identity() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let alice = Principal::builder("alice", AuthMethod::Jwt)
        .namespace("acme")
        .build();
    let session = initialize(&service, Some(&alice)).await;

    let others = [
        Principal::builder("alice", AuthMethod::ApiKey)
            .namespace("acme")
            .build(),
        Principal::builder("alice", AuthMethod::Jwt)
            .namespace("globex")
            .build(),
        Principal::builder("alice", AuthMethod::Jwt).build(),
        Principal::builder("Alice", AuthMethod::Jwt)
            .namespace("acme")
            .build(),
    ];
    for other in &others {
        assert_eq!(
            post_status(&service, Some(other), &session).await,
            404,
            "{other:?}"
        );
    }
    assert_eq!(post_status(&service, None, &session).await, 404);
    assert_eq!(post_status(&service, Some(&alice), &session).await, 200);
}

#[tokio::test]
async fn requests_without_a_principal_are_anonymous() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);

    let session = initialize(&service, None).await;
    assert_eq!(post_status(&service, None, &session).await, 200);
    let anonymous = Principal::anonymous();
    assert_eq!(post_status(&service, Some(&anonymous), &session).await, 200);
    // A real subject named `anonymous` is someone else.
    assert_eq!(
        post_status(&service, Some(&jwt("anonymous")), &session).await,
        404
    );

    let alices = initialize(&service, Some(&jwt("alice"))).await;
    assert_eq!(post_status(&service, None, &alices).await, 404);
}

#[tokio::test]
async fn several_session_headers_are_refused() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let alice = jwt("alice");
    let session = initialize(&service, Some(&alice)).await;
    let calls = server.calls();

    for pair in [
        [session.as_str(), session.as_str()],
        [session.as_str(), "forged"],
    ] {
        let response = send(&service, request(Method::POST, Some(&alice), &pair)).await;
        assert_session_not_found(response).await;
    }
    assert_eq!(server.calls(), calls);
    assert_eq!(post_status(&service, Some(&alice), &session).await, 200);
}

#[tokio::test]
async fn a_response_with_several_session_ids_binds_nothing() {
    let layer = SessionBindingLayer::new();
    let inner = tower::service_fn(|_: Request<()>| async {
        let mut response = Response::new(());
        response
            .headers_mut()
            .append(MCP_SESSION_ID, HeaderValue::from_static("a"));
        response
            .headers_mut()
            .append(MCP_SESSION_ID, HeaderValue::from_static("b"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let service = layer.layer(inner);
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(layer.sessions().is_empty());
}

#[tokio::test]
async fn clones_share_the_table() {
    let layer = SessionBindingLayer::new();
    let clone = layer.clone();
    let server = FakeServer::default();
    let session = initialize(&server.layered(&layer), Some(&jwt("alice"))).await;
    let other = server.layered(&clone);
    assert_eq!(clone.sessions().len(), 1);
    assert_eq!(other.sessions().len(), 1);
    assert_eq!(
        post_status(&other, Some(&jwt("alice")), &session).await,
        200
    );
}

#[tokio::test]
async fn debug_output_never_shows_session_ids() {
    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let session = initialize(&service, Some(&jwt("alice"))).await;
    for text in [format!("{layer:?}"), format!("{:?}", layer.sessions())] {
        assert!(!text.contains(&session), "{text}");
        assert!(text.contains("len: 1"), "{text}");
    }
    let future = service
        .clone()
        .call(request(Method::POST, None, &[&session]));
    assert!(!format!("{future:?}").contains(&session));
}

#[tokio::test(flavor = "current_thread")]
async fn each_refusal_is_one_audit_event_without_the_session_id() {
    crate::testing::start();

    let layer = SessionBindingLayer::new();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let session = initialize(&service, Some(&jwt("alice"))).await;
    let mut stolen = request(Method::POST, Some(&jwt("bob")), &[&session]);
    stolen
        .extensions_mut()
        .insert(crate::client_ip::ClientIp([192, 0, 2, 201].into()));
    let response = send(&service, stolen).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // 192.0.2.201 is this test's own marker.
    let audit: Vec<String> = crate::testing::lines_with("192.0.2.201")
        .into_iter()
        .filter(|line| line.contains(audit::TARGET))
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    let text = crate::testing::text();
    let event = &audit[0];
    for expected in [
        "session_not_found",
        "192.0.2.201",
        "subject=\"bob\"",
        "bound to another principal",
        "fingerprint",
    ] {
        assert!(event.contains(expected), "{expected}: {event}");
    }
    assert!(!text.contains(&session), "{text}");
}

#[test]
fn bindings_and_lookups_sweep_expired_bindings() {
    let clock = TestClock::new();
    let now = {
        let clock = clock.clone();
        move || clock.start + Duration::from_millis(clock.millis.load(Ordering::SeqCst))
    };
    let table = Table::new(100, Duration::from_secs(10), Arc::new(now));
    assert_eq!(table.shards.len(), 1);
    let owner = Caller::of(None).to_owner();
    for n in 0..20 {
        table.bind(&format!("old-{n}"), owner.clone());
    }
    clock.advance(Duration::from_secs(10));
    // Each operation sweeps a few expired bindings, oldest first.
    table.bind("new", owner.clone());
    assert_eq!(table.len(), 21 - SWEEP_PER_OPERATION);
    assert!(matches!(
        table.lookup("old-19", Caller::of(None)),
        Lookup::Unknown
    ));
    assert!(matches!(
        table.lookup("new", Caller::of(None)),
        Lookup::Owner(_)
    ));
    for _ in 0..3 {
        table.bind("new", owner.clone());
    }
    assert_eq!(table.len(), 1);
    // Re-binding an id keeps one entry.
    table.bind("new", Caller::of(Some(&jwt("alice"))).to_owner());
    assert_eq!(table.len(), 1);
    assert!(matches!(
        table.lookup("new", Caller::of(None)),
        Lookup::Other
    ));
}

#[tokio::test]
async fn refusals_can_be_answered_like_the_server() {
    // rmcp's own answer to an unknown session: 404 with a plain-text body.
    let like_rmcp = |_: &Rejection, _: &reject::RequestHead<'_>| {
        let mut response = Response::new(Bytes::from_static(b"Not Found: Session not found"));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
    };
    let layer = SessionBindingLayer::new().responder(like_rmcp);
    let inner = tower::service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let mut request = Request::new(());
    request
        .headers_mut()
        .insert(MCP_SESSION_ID, HeaderValue::from_static("forged"));
    let response = layer.layer(inner).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.extensions().get::<Rejection>().unwrap().reason(),
        Reason::SessionNotFound
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "Not Found: Session not found");
}

#[test]
fn a_refusal_polled_again_is_an_empty_404() {
    type Inner = std::future::Ready<Result<Response<Full<Bytes>>, std::convert::Infallible>>;
    let refusal = Response::new(Bytes::from_static(b"refused"));
    let mut future = std::pin::pin!(ResponseFuture::<Inner>::reject(refusal));
    assert_eq!(
        format!("{future:?}"),
        r#"ResponseFuture { state: "reject" }"#
    );
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let Poll::Ready(Ok(first)) = future.as_mut().poll(&mut cx) else {
        panic!("a refusal is ready at once");
    };
    assert_eq!(first.status(), StatusCode::OK);
    let Poll::Ready(Ok(again)) = future.as_mut().poll(&mut cx) else {
        panic!("a refusal polled again is ready at once");
    };
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        format!("{future:?}"),
        r#"ResponseFuture { state: "reject" }"#
    );
}

#[tokio::test]
async fn the_service_constructor_makes_the_same_layer() {
    let layer = SessionBinding::layer();
    let server = FakeServer::default();
    let service = server.layered(&layer);
    let session = initialize(&service, Some(&jwt("alice"))).await;
    assert_eq!(
        post_status(&service, Some(&jwt("alice")), &session).await,
        200
    );
    let response = send(
        &service,
        request(Method::POST, Some(&jwt("bob")), &[&session]),
    )
    .await;
    assert_session_not_found(response).await;
    assert_eq!(layer.sessions().max_sessions(), DEFAULT_MAX_SESSIONS);
    assert_eq!(layer.sessions().idle_timeout(), DEFAULT_IDLE_TIMEOUT);
}
