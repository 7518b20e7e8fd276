//! `examples/axum_app.rs` served on 127.0.0.1 and called over HTTP: the
//! perimeter in front, then per route the namespace, the scope and the
//! timeout; `/health` outside.
#![cfg(all(feature = "stack", feature = "namespace", feature = "axum"))]

#[allow(dead_code)]
#[path = "../examples/axum_app.rs"]
mod axum_app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use http::{Method, StatusCode};
use mcp_support::{Reply, Server, send};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_warden::config::WardenConfig;

const SECRET: &str = "axum-example-secret-of-32-bytes-or-more";

async fn start(vars: &[(&str, &str)]) -> Server {
    let mut all = vec![("MCP_JWT_SECRET", SECRET)];
    all.extend_from_slice(vars);
    let config = WardenConfig::from_vars(all).unwrap();
    Server::serve(axum_app::app(&config).unwrap(), CancellationToken::new()).await
}

fn bearer(claims: serde_json::Value) -> String {
    format!("Bearer {}", mcp_support::sign_hs256(SECRET, claims))
}

async fn get(server: &Server, path: &str, auth: &str) -> Reply {
    let url = format!("http://{}{path}", server.addr);
    send(Method::GET, &url, &[("authorization", auth)], "").await
}

async fn post(server: &Server, path: &str, auth: &str, body: &str) -> Reply {
    let url = format!("http://{}{path}", server.addr);
    send(
        Method::POST,
        &url,
        &[("authorization", auth)],
        body.to_owned(),
    )
    .await
}

#[tokio::test]
async fn the_perimeter_then_namespace_and_scope_per_route() {
    let server = start(&[]).await;
    // No credential: 401 with a Bearer challenge; /health stays open.
    let reply = get(&server, "/api/whoami", "").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.contains_key("www-authenticate"));
    // Signed with another key.
    let forged = mcp_support::sign_hs256(
        "some-other-secret-of-32-bytes-or-more",
        json!({"sub": "alice", "namespace": "acme", "roles": ["admin"]}),
    );
    let reply = get(&server, "/api/whoami", &format!("Bearer {forged}")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let url = format!("http://{}/health", server.addr);
    assert_eq!(
        send(Method::GET, &url, &[], "").await.status,
        StatusCode::OK
    );

    let alice = bearer(json!({"sub": "alice", "namespace": "acme", "scope": "notes:read"}));
    let reply = get(&server, "/api/whoami", &alice).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.json(),
        json!({"subject": "alice", "namespace": "acme", "scopes": ["notes:read"]})
    );
    // Her tenant, not another.
    let reply = get(&server, "/api/tenants/acme/notes", &alice).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = get(&server, "/api/tenants/globex/notes", &alice).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "namespace_forbidden");
    // Writing needs `notes:write`.
    let reply = post(&server, "/api/tenants/acme/notes", &alice, "hi").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "insufficient_scope");
    let writer = bearer(json!({"sub": "bo", "namespace": "acme", "scope": "notes:write"}));
    let reply = post(&server, "/api/tenants/acme/notes", &writer, "hi").await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.json(), json!({"tenant": "acme", "note": "hi"}));
    // The admin role crosses namespaces.
    let admin = bearer(json!({"sub": "root", "namespace": "ops", "roles": ["admin"]}));
    let reply = get(&server, "/api/tenants/globex/notes", &admin).await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn a_blocked_address_is_refused_before_authentication() {
    let server = start(&[("MCP_BLOCKED_IPS", "127.0.0.0/8")]).await;
    let alice = bearer(json!({"sub": "alice", "namespace": "acme"}));
    let reply = get(&server, "/api/whoami", &alice).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "ip_denied");
    server.stop().await;
}
