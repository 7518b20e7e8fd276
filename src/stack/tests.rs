use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use super::*;
use crate::client_ip::ClientIp;

const SECRET: &str = "stack-test-secret-of-32-bytes-or-more!";

fn config(vars: &[(&str, &str)]) -> WardenConfig {
    let mut all = vec![("MCP_JWT_SECRET", SECRET)];
    all.extend_from_slice(vars);
    WardenConfig::from_vars(all).unwrap()
}

fn token(claims: serde_json::Value) -> String {
    crate::auth::install_crypto_provider();
    let mut claims = claims;
    claims["exp"] = json!(4_000_000_000u64);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// What the inner service saw of the last request it was called with.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    subject: Mutex<Option<String>>,
    client_ip: Mutex<Option<std::net::IpAddr>>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: serde_json::Value,
}

async fn call(
    layer: &WardenLayer,
    seen: &Arc<Seen>,
    peer: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let seen = Arc::clone(seen);
    type Inner =
        crate::mcp::RequestBody<crate::body_limit::LimitedBody<http_body_util::Full<bytes::Bytes>>>;
    let service = layer.layer(tower::service_fn(move |request: Request<Inner>| {
        let seen = Arc::clone(&seen);
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            *seen.subject.lock().unwrap() = request
                .extensions()
                .get::<Principal>()
                .map(|p| p.subject().to_owned());
            *seen.client_ip.lock().unwrap() = ClientIp::of(request.extensions());
            // Read the body, as a server would.
            let _ = request.into_body().collect().await;
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"{}"),
            )))
        }
    }));
    let mut builder = Request::post("/mcp").header("host", "localhost");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body.as_bytes(),
        )))
        .unwrap();
    request
        .extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

fn bearer(claims: serde_json::Value) -> String {
    format!("Bearer {}", token(claims))
}

#[tokio::test]
async fn blocked_addresses_are_refused_before_anything_else() {
    let layer =
        WardenLayer::from_config(&config(&[("MCP_BLOCKED_IPS", "203.0.113.0/24")])).unwrap();
    let seen = Arc::new(Seen::default());
    let reply = call(&layer, &seen, "203.0.113.9:1000", &[], "").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["code"], "ip_denied");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_token_is_required_and_a_valid_one_reaches_the_service() {
    let layer = WardenLayer::from_config(&config(&[])).unwrap();
    let seen = Arc::new(Seen::default());
    let reply = call(&layer, &seen, "192.0.2.1:1000", &[], "").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let challenge = reply.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(
            "resource_metadata=\"http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp\""
        ),
        "{challenge}"
    );
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);

    let auth = bearer(json!({"sub": "alice", "scope": "*"}));
    let reply = call(
        &layer,
        &seen,
        "192.0.2.1:1000",
        &[("authorization", auth.as_str())],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    assert_eq!(seen.subject.lock().unwrap().as_deref(), Some("alice"));
    assert_eq!(
        *seen.client_ip.lock().unwrap(),
        Some("192.0.2.1".parse().unwrap())
    );
    // Rate-limit headers of both limits an admitted request passed.
    assert_eq!(reply.headers.get_all("ratelimit-policy").iter().count(), 2);
    // A forged token.
    let reply = call(
        &layer,
        &seen,
        "192.0.2.1:1000",
        &[(
            "authorization",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        )],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_oversized_body_is_413_before_authentication() {
    let layer = WardenLayer::from_config(&config(&[("MCP_HTTP_MAX_BODY_BYTES", "16")])).unwrap();
    let seen = Arc::new(Seen::default());
    let body = "x".repeat(64);
    let reply = call(&layer, &seen, "192.0.2.1:1000", &[], &body).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_address_over_its_quota_is_429_even_with_forged_tokens() {
    let layer = WardenLayer::from_config(&config(&[
        ("MCP_RATE_LIMIT_RPM", "60"),
        ("MCP_RATE_LIMIT_BURST", "2"),
    ]))
    .unwrap();
    let seen = Arc::new(Seen::default());
    let forged = [("authorization", "Bearer forged")];
    for _ in 0..2 {
        let reply = call(&layer, &seen, "192.0.2.7:1000", &forged, "").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = call(&layer, &seen, "192.0.2.7:1000", &forged, "").await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(reply.headers.contains_key("retry-after"));
    // Another address is not affected.
    let reply = call(&layer, &seen, "192.0.2.8:1000", &forged, "").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tool_scopes_refuse_a_call_beyond_the_callers_scopes() {
    let layer =
        WardenLayer::from_config(&config(&[("MCP_TOOL_SCOPES", r#"{"delete":["admin"]}"#)]))
            .unwrap();
    assert!(layer.tool_policy().is_some());
    let seen = Arc::new(Seen::default());
    let auth = bearer(json!({"sub": "bob", "scope": "read"}));
    let call_delete =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete"}}"#;
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let reply = call(&layer, &seen, "192.0.2.1:1000", &headers, call_delete).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["code"], "insufficient_scope");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
    let call_echo = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}"#;
    let reply = call(&layer, &seen, "192.0.2.1:1000", &headers, call_echo).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_required_certificate_is_believed_only_from_the_proxy() {
    let layer = WardenLayer::from_config(&config(&[
        ("MCP_CLIENT_CERT_REQUIRED", "true"),
        ("MCP_TRUSTED_PROXIES", "10.0.0.1"),
    ]))
    .unwrap();
    let seen = Arc::new(Seen::default());
    let auth = bearer(json!({"sub": "alice"}));
    let verified = [
        ("authorization", auth.as_str()),
        ("x-ssl-client-verify", "SUCCESS"),
    ];
    let reply = call(&layer, &seen, "10.0.0.1:1000", &verified, "").await;
    assert_eq!(reply.status, StatusCode::OK);
    // The same header straight from a client: refused.
    let reply = call(&layer, &seen, "192.0.2.1:1000", &verified, "").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.body["code"], "client_cert_required");
    let reply = call(&layer, &seen, "10.0.0.1:1000", &verified[..1], "").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let layer = WardenLayer::from_config(&config(&[("MCP_ALLOWED_IPS", "192.0.2.0/24")])).unwrap();
    let seen = Arc::new(Seen::default());
    // Without MCP_TRUST_X_FORWARDED a spoofed header buys nothing.
    let spoof = [("x-forwarded-for", "192.0.2.1")];
    let reply = call(&layer, &seen, "203.0.113.5:1000", &spoof, "").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    let layer = WardenLayer::from_config(&config(&[
        ("MCP_ALLOWED_IPS", "192.0.2.0/24"),
        ("MCP_TRUST_X_FORWARDED", "true"),
        ("MCP_TRUSTED_PROXIES", "10.0.0.1"),
    ]))
    .unwrap();
    let auth = bearer(json!({"sub": "alice"}));
    let via_proxy = [
        ("x-forwarded-for", "192.0.2.1"),
        ("authorization", auth.as_str()),
    ];
    let reply = call(&layer, &seen, "10.0.0.1:1000", &via_proxy, "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        *seen.client_ip.lock().unwrap(),
        Some("192.0.2.1".parse().unwrap())
    );
}

#[tokio::test]
async fn layers_that_are_off_cost_nothing_visible() {
    let layer = WardenLayer::from_config(&config(&[
        ("MCP_RATE_LIMIT_ENABLED", "false"),
        ("MCP_AUTH_MODE", "none"),
    ]))
    .unwrap();
    assert!(!layer.rate_limit().enabled());
    assert!(
        layer
            .warnings()
            .iter()
            .any(|w| w.contains("MCP_AUTH_MODE=none"))
    );
    let seen = Arc::new(Seen::default());
    let reply = call(&layer, &seen, "192.0.2.1:1000", &[], "{}").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.headers.contains_key("ratelimit-policy"));
    assert_eq!(seen.subject.lock().unwrap().as_deref(), Some("anonymous"));
}

#[tokio::test]
async fn reloads_swap_the_ip_lists_and_keep_them_on_a_bad_load() {
    let layer = WardenLayer::from_config(&config(&[])).unwrap();
    let seen = Arc::new(Seen::default());
    let next = Arc::new(Mutex::new(config(&[("MCP_BLOCKED_IPS", "192.0.2.0/24")])));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reload = layer.reload_handle(Arc::new({
        let (next, fail) = (Arc::clone(&next), Arc::clone(&fail));
        move || {
            if fail.load(Ordering::SeqCst) {
                return Err(ConfigError::new("MCP_BLOCKED_IPS", "not a network"));
            }
            Ok(next.lock().unwrap().clone())
        }
    }));
    assert_eq!(
        call(&layer, &seen, "192.0.2.1:1000", &[], "").await.status,
        StatusCode::UNAUTHORIZED
    );
    reload.reload().unwrap();
    assert_eq!(
        call(&layer, &seen, "192.0.2.1:1000", &[], "").await.status,
        StatusCode::FORBIDDEN
    );
    fail.store(true, Ordering::SeqCst);
    assert!(reload.reload().is_err());
    assert_eq!(
        call(&layer, &seen, "192.0.2.1:1000", &[], "").await.status,
        StatusCode::FORBIDDEN
    );
}

#[test]
fn settings_the_layers_cannot_use_name_their_variable() {
    let no_key = WardenConfig::from_vars([("MCP_ENVIRONMENT", "development")]).unwrap();
    let error = WardenLayer::from_config(&no_key).unwrap_err();
    assert_eq!(error.setting(), "MCP_JWT_SECRET");
    let api_keys_only = WardenConfig::from_vars([
        ("MCP_AUTH_MODE", "api_key"),
        ("MCP_API_KEYS", "an-api-key-of-16-chars"),
    ])
    .unwrap();
    let layer = WardenLayer::from_config(&api_keys_only).unwrap();
    assert!(layer.jwt().is_none());
    assert_eq!(layer.api_keys().map(ApiKeys::len), Some(1));
}

#[test]
fn resource_and_metadata_urls() {
    assert_eq!(resource_url(&config(&[])), "http://127.0.0.1:8000/mcp");
    assert_eq!(
        resource_url(&config(&[("MCP_HOST", "::"), ("MCP_PORT", "9000")])),
        "http://127.0.0.1:9000/mcp"
    );
    assert_eq!(
        metadata_url("https://mcp.example.com/mcp"),
        "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
    );
    assert_eq!(
        metadata_url("https://mcp.example.com/"),
        "https://mcp.example.com/.well-known/oauth-protected-resource"
    );
}

/// A message from `subject` at `peer` (a `tools/call` of `tool`, or a
/// `ping`), as a WebSocket session would count it.
fn message(subject: &str, peer: &str, tool: Option<&str>) -> Request<()> {
    let mut head = Request::new(());
    head.extensions_mut()
        .insert(Principal::builder(subject, AuthMethod::Jwt).build());
    head.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    head.extensions_mut().insert(crate::principal::McpCall::new(
        if tool.is_some() { "tools/call" } else { "ping" },
        tool.map(str::to_owned),
    ));
    head
}

async fn admits(layer: &WardenLayer, subject: &str, peer: &str, tool: Option<&str>) -> bool {
    layer
        .check_message(&message(subject, peer, tool))
        .await
        .is_ok()
}

#[tokio::test]
async fn messages_draw_on_the_allowances_of_requests() {
    let layer = WardenLayer::from_config(&config(&[
        ("MCP_RATE_LIMIT_RPM", "60"),
        ("MCP_RATE_LIMIT_BURST", "4"),
        ("MCP_TOOL_RATE_LIMITS", r#"{"search":1}"#),
    ]))
    .unwrap();
    // The tool's own quota of 1.
    assert!(admits(&layer, "ann", "192.0.2.1:1", Some("search")).await);
    let refused = layer
        .check_message(&message("ann", "192.0.2.1:1", Some("search")))
        .await
        .unwrap_err();
    assert!(refused.retry_after().is_some());
    assert_eq!(refused.rejection().status(), StatusCode::TOO_MANY_REQUESTS);
    // The address's burst of 4: two messages used it, a request uses the
    // third, one message the fourth; then the address is refused, whoever
    // sends.
    let seen = Arc::new(Seen::default());
    let auth = bearer(json!({"sub": "ann", "scope": "*"}));
    let headers = [("authorization", auth.as_str())];
    let reply = call(&layer, &seen, "192.0.2.1:1", &headers, "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(admits(&layer, "ann", "192.0.2.1:1", None).await);
    assert!(!admits(&layer, "ben", "192.0.2.1:1", None).await);
    // The principal has used 3 of its 4 (the refused tool call was not
    // counted against it): one more from another address, then refused;
    // another principal there is admitted.
    assert!(admits(&layer, "ann", "192.0.2.2:1", None).await);
    assert!(!admits(&layer, "ann", "192.0.2.2:1", None).await);
    assert!(admits(&layer, "ben", "192.0.2.2:1", None).await);
}

#[tokio::test]
async fn a_call_meets_the_tool_policy_then_the_quota_of_the_rule_it_matches() {
    let layer = WardenLayer::from_config(&config(&[
        ("MCP_TOOL_SCOPES", r#"{"*.add": ["math"], "b.add": []}"#),
        ("MCP_TOOL_RATE_LIMITS", r#"{"*.echo": 1}"#),
    ]))
    .unwrap();
    let ip = "192.0.2.1:1";
    // `*.add` holds on any server; the exact `b.add` wins over it.
    match layer.check_call(&message("ann", ip, Some("a.add"))).await {
        Err(CallRefused::Scope(rejection)) => {
            assert_eq!(rejection.status(), StatusCode::FORBIDDEN);
            assert_eq!(rejection.reason().code(), "insufficient_scope");
            assert!(
                rejection
                    .headers()
                    .iter()
                    .any(|(name, value)| name == http::header::WWW_AUTHENTICATE
                        && value
                            == "Bearer error=\"insufficient_scope\", error_description=\"tool `a.add` \
                                requires a scope the caller was not granted: math\", scope=\"math\", \
                                resource_metadata=\"http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp\""),
                "{rejection:?}"
            );
        }
        other => panic!("expected a scope refusal, got {other:?}"),
    }
    assert!(
        layer
            .check_call(&message("ann", ip, Some("b.add")))
            .await
            .is_ok()
    );
    assert!(
        layer
            .check_call(&message("ann", ip, Some("add")))
            .await
            .is_ok()
    );
    // One allowance for the rule: `a.echo` spends what `b.echo` would use.
    assert!(
        layer
            .check_call(&message("ann", ip, Some("a.echo")))
            .await
            .is_ok()
    );
    let refused = layer
        .check_call(&message("ann", ip, Some("b.echo")))
        .await
        .unwrap_err();
    assert_eq!(refused.rejection().status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.retry_after().is_some());
    let headers = refused.rejection().headers();
    assert!(
        headers
            .iter()
            .any(|(name, _)| name == http::header::RETRY_AFTER)
    );
    assert!(
        headers
            .iter()
            .any(|(name, value)| name == "ratelimit-policy"
                && value.to_str().unwrap().starts_with("\"*.echo\";q=1")),
        "{headers:?}"
    );
    // Another caller has its own; a message that is no call passes.
    assert!(
        layer
            .check_call(&message("ben", ip, Some("b.echo")))
            .await
            .is_ok()
    );
    assert!(layer.check_call(&message("ann", ip, None)).await.is_ok());
}

#[tokio::test]
async fn a_refused_call_is_not_counted_against_the_tools_quota() {
    let layer = WardenLayer::from_config(&config(&[
        ("MCP_TOOL_SCOPES", r#"{"echo": ["say"]}"#),
        ("MCP_TOOL_RATE_LIMITS", r#"{"echo": 1}"#),
    ]))
    .unwrap();
    let ip = "192.0.2.1:1";
    for _ in 0..3 {
        let refused = layer.check_call(&message("ann", ip, Some("echo"))).await;
        assert!(matches!(refused, Err(CallRefused::Scope(_))), "{refused:?}");
    }
    let mut head = message("ann", ip, Some("echo"));
    head.extensions_mut().insert(
        Principal::builder("ann", AuthMethod::Jwt)
            .scopes(["say"])
            .build(),
    );
    assert!(layer.check_call(&head).await.is_ok());
    assert!(layer.may_call(&head, "echo"));
    assert!(!layer.may_call(&message("ann", ip, None), "echo"));
}

#[tokio::test]
async fn the_default_tool_quota_is_one_allowance_for_every_tool_it_covers() {
    let layer = WardenLayer::from_config(&config(&[(
        "MCP_TOOL_RATE_LIMITS",
        r#"{"*": 2, "echo": 1}"#,
    )]))
    .unwrap();
    let ip = "192.0.2.1:1";
    // `echo` has its own; every other tool shares the `*` allowance.
    assert!(
        layer
            .check_call(&message("ann", ip, Some("echo")))
            .await
            .is_ok()
    );
    assert!(
        layer
            .check_call(&message("ann", ip, Some("echo")))
            .await
            .is_err()
    );
    assert!(
        layer
            .check_call(&message("ann", ip, Some("a.add")))
            .await
            .is_ok()
    );
    assert!(
        layer
            .check_call(&message("ann", ip, Some("b.add")))
            .await
            .is_ok()
    );
    let refused = layer
        .check_call(&message("ann", ip, Some("whoami")))
        .await
        .unwrap_err();
    assert_eq!(refused.rejection().status(), StatusCode::TOO_MANY_REQUESTS);
}
