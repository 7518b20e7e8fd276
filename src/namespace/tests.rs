use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::body::ResponseBody;
use crate::principal::AuthMethod;

/// A service that answers with the namespace it was given (or `-`) and
/// counts its calls.
fn service<R: Respond + Clone>(
    layer: NamespaceLayer<R>,
) -> (
    impl Service<Request<()>, Response = Response<ResponseBody<String>>, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let inner = service_fn(move |request: Request<()>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let ns = request
            .extensions()
            .get::<Namespace>()
            .map_or_else(|| "-".to_owned(), ToString::to_string);
        async move { Ok::<_, Infallible>(Response::new(ns)) }
    });
    (layer.layer(inner), calls)
}

fn principal(subject: &str, namespace: Option<&str>, roles: &[&str]) -> Principal {
    let mut builder = Principal::builder(subject, AuthMethod::Jwt).roles(roles.iter().copied());
    if let Some(ns) = namespace {
        builder = builder.namespace(ns);
    }
    builder.build()
}

fn request(path: &str, who: Option<Principal>) -> Request<()> {
    let mut request = Request::builder().uri(path).body(()).unwrap();
    if let Some(who) = who {
        request.extensions_mut().insert(who);
    }
    request
        .extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 77], 4000)));
    request
}

async fn send<S>(service: S, request: Request<()>) -> (StatusCode, String)
where
    S: Service<Request<()>, Response = Response<ResponseBody<String>>, Error = Infallible>,
{
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn code(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap();
    value["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn own_namespace_passes_with_the_extension_and_a_foreign_one_is_403() {
    crate::testing::start();
    let layer = NamespaceLayer::new().from_path_segment(1);
    let (svc, calls) = service(layer);
    let alice = || Some(principal("alice", Some("acme"), &[]));

    let (status, body) = send(svc.clone(), request("/tenants/acme/items", alice())).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "acme"));

    // Its own client address, so that this test's audit lines are its own.
    let mut foreign = request("/tenants/globex/items", alice());
    foreign
        .extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 78], 4000)));
    let (status, body) = send(svc.clone(), foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "namespace_forbidden");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the inner service was called"
    );

    // A path without the segment asks for none: the caller's own.
    let (status, body) = send(svc, request("/tenants", alice())).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "acme"));

    let audit: Vec<String> = crate::testing::lines_with("192.0.2.78")
        .into_iter()
        .filter(|line| line.contains(crate::audit::TARGET))
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].contains("namespace_forbidden"), "{}", audit[0]);
    assert!(audit[0].contains("subject=\"alice\""), "{}", audit[0]);
}

#[tokio::test]
async fn attack_invalid_and_confusable_names_are_refused() {
    let layer = NamespaceLayer::new().from_header(HeaderName::from_static("x-namespace"));
    let (svc, calls) = service(layer);
    let long = "a".repeat(MAX_NAMESPACE_LEN + 1);
    for asked in [
        "ACME",
        "Acme",
        "acme/../globex",
        "../acme",
        "-acme",
        "ac me",
        long.as_str(),
    ] {
        let mut req = request("/items", Some(principal("alice", Some("acme"), &[])));
        req.headers_mut()
            .insert("x-namespace", HeaderValue::from_str(asked).unwrap());
        let (status, body) = send(svc.clone(), req).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{asked}");
        assert_eq!(code(&body), "namespace_forbidden");
    }
    // Non-UTF-8 bytes too.
    let mut req = request("/items", Some(principal("alice", Some("acme"), &[])));
    req.headers_mut()
        .insert("x-namespace", HeaderValue::from_bytes(b"acm\xff").unwrap());
    assert_eq!(send(svc.clone(), req).await.0, StatusCode::FORBIDDEN);
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let max = "a".repeat(MAX_NAMESPACE_LEN);
    assert!(Namespace::parse(&max).is_some());
    assert!(Namespace::parse("tenant_1-b").is_some());
}

#[tokio::test]
async fn a_principal_with_an_invalid_namespace_claim_has_none() {
    let layer = NamespaceLayer::new().from_path_segment(0);
    let (svc, _) = service(layer);
    let (status, _) = send(
        svc,
        request("/ACME", Some(principal("mallory", Some("ACME"), &[]))),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_admin_role_crosses_namespaces_only_when_configured() {
    let admin = || Some(principal("root", Some("ops"), &["admin"]));
    let (strict, _) = service(NamespaceLayer::new().from_path_segment(0));
    assert_eq!(
        send(strict, request("/acme", admin())).await.0,
        StatusCode::FORBIDDEN
    );
    let (svc, _) = service(
        NamespaceLayer::new()
            .from_path_segment(0)
            .admin_role("admin"),
    );
    assert_eq!(
        send(svc.clone(), request("/acme", admin())).await,
        (StatusCode::OK, "acme".to_owned())
    );
    // The role, not the subject, decides.
    assert_eq!(
        send(
            svc,
            request("/acme", Some(principal("root", Some("ops"), &["reader"])))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn principals_without_a_namespace_and_requests_without_a_principal() {
    let (svc, _) = service(NamespaceLayer::new());
    let (status, body) = send(svc.clone(), request("/", Some(principal("bob", None, &[])))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "namespace_forbidden");
    let (status, body) = send(svc, request("/", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "unauthenticated");

    let (lenient, _) = service(NamespaceLayer::new().require_namespace(false));
    assert_eq!(
        send(lenient, request("/", Some(principal("bob", None, &[])))).await,
        (StatusCode::OK, "-".to_owned())
    );
}

#[tokio::test(start_paused = true)]
async fn an_async_resolver_looks_up_the_owner() {
    let owners: Arc<HashMap<&'static str, &'static str>> =
        Arc::new(HashMap::from([("c1", "acme"), ("c2", "globex")]));
    let layer = NamespaceLayer::new().resolve_async(move |head: &RequestHead<'_>| {
        let owners = Arc::clone(&owners);
        let id = head
            .uri
            .path()
            .trim_start_matches("/connections/")
            .to_owned();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if id == "broken" {
                return Err(Rejection::new(Reason::AuthUnavailable).with_detail("store down"));
            }
            Ok(owners.get(id.as_str()).map(|ns| (*ns).to_owned()))
        }
    });
    let (svc, calls) = service(layer);
    let alice = || Some(principal("alice", Some("acme"), &[]));
    assert_eq!(
        send(svc.clone(), request("/connections/c1", alice())).await,
        (StatusCode::OK, "acme".to_owned())
    );
    assert_eq!(
        send(svc.clone(), request("/connections/c2", alice()))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // Unknown ids ask for nothing: the handler answers 404 itself.
    assert_eq!(
        send(svc.clone(), request("/connections/nope", alice())).await,
        (StatusCode::OK, "acme".to_owned())
    );
    assert_eq!(
        send(svc, request("/connections/broken", alice())).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn grpc_callers_read_permission_denied() {
    let (svc, _) = service(NamespaceLayer::new().from_path_segment(0));
    let mut req = request("/globex", Some(principal("alice", Some("acme"), &[])));
    req.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    let response = svc.oneshot(req).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "7");
    let _: Bytes = response.into_body().collect().await.unwrap().to_bytes();
}

#[tokio::test]
async fn require_namespace_layer_keeps_callers_in_their_own_namespace() {
    let (svc, calls) = service(RequireNamespace::layer());
    let (status, body) = send(
        svc.clone(),
        request("/items", Some(principal("alice", Some("acme"), &[]))),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "acme"));
    let (status, body) = send(svc, request("/items", Some(principal("bob", None, &[])))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "namespace_forbidden");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
