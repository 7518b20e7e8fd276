//! Token exchange toward upstreams (RFC 8693), with real parts on
//! 127.0.0.1: `oidc-provider` (`tests/oidc/provider.js`) issues the
//! callers' opaque tokens, answers the gateway's introspection and grants
//! the exchange; the gateway is the reference server with
//! `MCP_TOKEN_EXCHANGE_*`; the upstream is another reference server that
//! accepts only JWTs from the provider's JWKS whose audience is its own
//! URL, and records every `Authorization` it receives.
//!
//! Needs `node` and `tests/oidc/node_modules`; see `support/oidc.rs`.
#![cfg(all(feature = "token-exchange", feature = "introspection"))]

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

#[allow(dead_code)]
#[path = "support/oidc.rs"]
mod oidc;

use std::sync::{Arc, Mutex};

use app::settings::Settings;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, StatusCode};
use mcp_support::{Reply, Server, send};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const CLIENT_SECRET: &str = "a-test-client-secret-of-some-length";

/// A listener on a free 127.0.0.1 port, and its MCP URL.
async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    (listener, url)
}

/// A reference server with `vars` on `listener`; the `Authorization`
/// headers it receives go to `seen`.
async fn serve(listener: TcpListener, vars: Vec<(&str, String)>, seen: Seen) -> Server {
    let mut all = vec![
        ("MCP_DATABASE_URL", "sqlite::memory:".to_owned()),
        ("MCP_RATE_LIMIT_ENABLED", "false".to_owned()),
    ];
    all.extend(vars);
    let settings = Settings::from_vars(all).unwrap();
    let shutdown = CancellationToken::new();
    let router = app::router(&settings, &shutdown)
        .await
        .unwrap()
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let seen = Arc::clone(&seen);
                async move {
                    if let Some(value) = request.headers().get("authorization") {
                        let value = value.to_str().unwrap_or_default().to_owned();
                        seen.lock().unwrap().push(value);
                    }
                    next.run(request).await
                }
            },
        ));
    Server::serve_listener(listener, router, shutdown)
}

type Seen = Arc<Mutex<Vec<String>>>;

/// An opaque token of `opaque-client` for the gateway (namespace `acme`).
async fn caller_token(issuer: &str, gateway: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("opaque-client", Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "client_credentials"),
            ("scope", "tools:read tools:call gateway:connections"),
            ("resource", gateway),
        ]))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"))
        .to_owned()
}

/// `pairs` as an `application/x-www-form-urlencoded` body.
fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn exchanges(issuer: &str) -> u64 {
    let body: Value = reqwest::get(format!("{issuer}/test/exchanges"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["exchanges"].as_u64().unwrap()
}

async fn rest(
    gateway: &Server,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Reply {
    let url = format!("http://{}/api/v1/mcp/connections{path}", gateway.addr);
    let auth = format!("Bearer {token}");
    let mut headers = vec![("authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    send(
        method,
        &url,
        &headers,
        body.map(|b| b.to_string()).unwrap_or_default(),
    )
    .await
}

async fn execute(gateway: &Server, id: &str, token: &str) -> Reply {
    rest(
        gateway,
        Method::POST,
        &format!("/{id}/tools/echo/execute"),
        token,
        Some(json!({"arguments": {"text": "exchanged"}})),
    )
    .await
}

/// The claims of a JWT, unverified (the upstream verified it).
fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn upstreams_receive_a_token_exchanged_for_them_and_never_the_callers() {
    let test = "upstreams_receive_a_token_exchanged_for_them_and_never_the_callers";
    let (gateway_listener, gateway_url) = listener().await;
    let (upstream_listener, upstream_url) = listener().await;
    // Listening, never answering: an upstream the server issues no tokens
    // for.
    let (_elsewhere, elsewhere_url) = listener().await;
    let Some(provider) = oidc::start_provider(
        test,
        &[
            ("RESOURCE", gateway_url.clone()),
            ("UPSTREAM", upstream_url.clone()),
        ],
    ) else {
        return;
    };
    let issuer = provider.issuer.clone();

    let upstream_seen = Seen::default();
    let upstream = serve(
        upstream_listener,
        vec![
            ("MCP_JWKS_URL", format!("{issuer}/jwks")),
            ("MCP_JWT_ISSUER", issuer.clone()),
            ("MCP_RESOURCE_URL", upstream_url.clone()),
        ],
        Arc::clone(&upstream_seen),
    )
    .await;
    let gateway = serve(
        gateway_listener,
        vec![
            (
                "MCP_JWT_SECRET",
                "a-jwt-secret-of-at-least-thirty-two-bytes".to_owned(),
            ),
            ("MCP_RESOURCE_URL", gateway_url.clone()),
            ("MCP_JWT_ISSUER", issuer.clone()),
            (
                "MCP_INTROSPECTION_URL",
                format!("{issuer}/token/introspection"),
            ),
            ("MCP_INTROSPECTION_CLIENT_ID", "mcp-server".to_owned()),
            ("MCP_INTROSPECTION_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("MCP_TOKEN_EXCHANGE_URL", format!("{issuer}/token")),
            ("MCP_TOKEN_EXCHANGE_CLIENT_ID", "gateway".to_owned()),
            ("MCP_TOKEN_EXCHANGE_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "2".to_owned()),
        ],
        Seen::default(),
    )
    .await;

    let alice = caller_token(&issuer, &gateway_url).await;
    let created = rest(
        &gateway,
        Method::POST,
        "",
        &alice,
        Some(json!({"server_name": "up", "url": upstream_url, "upstream_auth": "token_exchange"})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(created.json()["upstream_auth"], "token_exchange");
    assert_eq!(created.json()["has_credential"], false);
    let id = created.json()["id"].as_str().unwrap().to_owned();

    // A credential and token exchange exclude each other.
    let both = rest(
        &gateway,
        Method::POST,
        "",
        &alice,
        Some(
            json!({"server_name": "both", "url": elsewhere_url, "credential": "x",
                     "upstream_auth": "token_exchange"}),
        ),
    )
    .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST, "{}", both.text());
    // An unknown way is refused, not read as the default.
    let unknown = rest(
        &gateway,
        Method::POST,
        "",
        &alice,
        Some(json!({"server_name": "odd", "url": elsewhere_url, "upstream_auth": "passthrough"})),
    )
    .await;
    assert_eq!(
        unknown.status,
        StatusCode::BAD_REQUEST,
        "{}",
        unknown.text()
    );

    // Over REST, then over MCP (the official client): the upstream runs
    // the tool, admitted on the exchanged token.
    let ran = execute(&gateway, &id, &alice).await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.text());
    assert_eq!(ran.json()["result"]["content"][0]["text"], "exchanged");
    let client = ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(gateway_url.clone())
                .auth_header(alice.clone()),
        ))
        .await
        .unwrap();
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "up.echo"), "{tools:?}");
    let result = client
        .call_tool(
            CallToolRequestParams::new("up.echo")
                .with_arguments(serde_json::from_value(json!({"text": "over mcp"})).unwrap()),
        )
        .await
        .unwrap();
    let result = serde_json::to_value(&result).unwrap();
    assert_eq!(result["content"][0]["text"], "over mcp", "{result}");
    client.cancel().await.unwrap();

    // What the upstream received: the exchanged token, always; the
    // caller's, never. One exchange served every call (cached until
    // shortly before it expires).
    let seen = upstream_seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|auth| !auth.contains(&alice)), "{seen:?}");
    let token = seen[0].strip_prefix("Bearer ").expect("a bearer token");
    assert!(seen.iter().all(|auth| auth == &seen[0]), "{seen:?}");
    let claims = claims(token);
    assert_eq!(claims["aud"], upstream_url.as_str());
    assert_eq!(claims["sub"], "opaque-client");
    assert_eq!(claims["act"]["sub"], "gateway");
    assert_eq!(claims["namespace"], "acme");
    assert_eq!(exchanges(&issuer).await, 1);

    // A caller whose token was revoked after the gateway last checked it
    // (its introspection answer is still cached): the exchange refuses it,
    // 401, and the upstream hears nothing.
    let bob = caller_token(&issuer, &gateway_url).await;
    let listed = rest(&gateway, Method::GET, "", &bob, None).await;
    assert_eq!(listed.status, StatusCode::OK);
    let revoked = reqwest::Client::new()
        .post(format!("{issuer}/token/revocation"))
        .basic_auth("opaque-client", Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", bob.as_str())]))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let before = upstream_seen.lock().unwrap().len();
    let refused = execute(&gateway, &id, &bob).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );
    assert_eq!(refused.json()["code"], "token_exchange_refused");
    assert_eq!(upstream_seen.lock().unwrap().len(), before);

    // An upstream the authorization server issues no tokens for: 403,
    // however often (a refusal is not the upstream failing: its breaker,
    // open after 2 failures, stays shut).
    let other = rest(
        &gateway,
        Method::POST,
        "",
        &alice,
        Some(json!({"server_name": "other", "url": elsewhere_url, "upstream_auth": "token_exchange"})),
    )
    .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.text());
    let other = other.json()["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        let refused = execute(&gateway, &other, &alice).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text());
        assert_eq!(refused.json()["code"], "token_exchange_forbidden");
    }

    // The token endpoint down: a caller with no exchanged token yet gets
    // 502, which counts against the connection's breaker; alice's cached
    // token still serves her until the breaker opens.
    let carol = caller_token(&issuer, &gateway_url).await;
    let listed = rest(&gateway, Method::GET, "", &carol, None).await;
    assert_eq!(listed.status, StatusCode::OK);
    drop(provider);
    let ran = execute(&gateway, &id, &alice).await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.text());
    for _ in 0..2 {
        let failed = execute(&gateway, &id, &carol).await;
        assert_eq!(failed.status, StatusCode::BAD_GATEWAY, "{}", failed.text());
        assert_eq!(failed.json()["code"], "token_exchange_failed");
    }
    let open = execute(&gateway, &id, &alice).await;
    assert_eq!(
        open.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        open.text()
    );
    assert_eq!(open.json()["code"], "circuit_open");
    assert!(
        upstream_seen
            .lock()
            .unwrap()
            .iter()
            .all(|auth| !auth.contains(&carol) && !auth.contains(&bob))
    );

    gateway.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn token_exchange_connections_need_the_settings() {
    let (gateway_listener, _) = listener().await;
    let gateway = serve(
        gateway_listener,
        vec![(
            "MCP_JWT_SECRET",
            "a-jwt-secret-of-at-least-thirty-two-bytes".to_owned(),
        )],
        Seen::default(),
    )
    .await;
    let token = mcp_support::sign_hs256(
        "a-jwt-secret-of-at-least-thirty-two-bytes",
        json!({"sub": "alice", "namespace": "acme", "scope": "gateway:connections"}),
    );
    let refused = rest(
        &gateway,
        Method::POST,
        "",
        &token,
        Some(json!({"server_name": "up", "url": "http://127.0.0.1:9/mcp",
                     "upstream_auth": "token_exchange"})),
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{}",
        refused.text()
    );
    assert!(
        refused.text().contains("MCP_TOKEN_EXCHANGE_URL"),
        "{}",
        refused.text()
    );
    gateway.stop().await;

    // Half the settings: refused at start-up, by name.
    let error = Settings::from_vars([
        (
            "MCP_JWT_SECRET",
            "a-jwt-secret-of-at-least-thirty-two-bytes",
        ),
        ("MCP_TOKEN_EXCHANGE_CLIENT_ID", "gateway"),
    ])
    .map(|_| ())
    .unwrap_err();
    assert_eq!(error.setting(), "MCP_TOKEN_EXCHANGE_CLIENT_ID");
    let error = Settings::from_vars([
        (
            "MCP_JWT_SECRET",
            "a-jwt-secret-of-at-least-thirty-two-bytes",
        ),
        ("MCP_TOKEN_EXCHANGE_URL", "http://127.0.0.1:9/token"),
        ("MCP_TOKEN_EXCHANGE_CLIENT_ID", "gateway"),
    ])
    .map(|_| ())
    .unwrap_err();
    assert_eq!(error.setting(), "MCP_TOKEN_EXCHANGE_CLIENT_SECRET");
}
