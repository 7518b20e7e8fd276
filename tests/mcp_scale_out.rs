//! Two reference servers behind one (imaginary) load balancer, sharing MCP
//! sessions through Redis (`MCP_SESSION_STORE=redis`) and, when a
//! PostgreSQL is given, gateway connections through it: one client moves
//! between the instances mid-session, and a stolen session id is worth
//! nothing on either.
#![cfg(feature = "redis")]

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

#[allow(dead_code)]
#[path = "support/redis.rs"]
mod redis_support;

use app::settings::Settings;
use http::{Method, StatusCode};
use mcp_support::{INITIALIZED, Reply, Server, initialize, post, send};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "scale-out-test-secret-of-32-bytes-or-more";

fn bearer(subject: &str) -> String {
    let claims = json!({"sub": subject, "namespace": "acme", "scope": "*"});
    format!("Bearer {}", mcp_support::sign_hs256(SECRET, claims))
}

async fn instance(redis: &str, database: &str) -> Server {
    let config = Settings::from_vars([
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_DATABASE_URL", database),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
        ("MCP_SESSION_STORE", "redis"),
        ("MCP_REDIS_URL", redis),
    ])
    .unwrap();
    let shutdown = CancellationToken::new();
    Server::serve(app::router(&config, &shutdown).await.unwrap(), shutdown).await
}

async fn in_session(url: &str, auth: &str, session: &str, body: &str) -> Reply {
    post(
        url,
        &[
            ("authorization", auth),
            ("mcp-session-id", session),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        body,
    )
    .await
}

fn echo(id: u64, text: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"echo","arguments":{"text":text}}}).to_string()
}

/// PostgreSQL when `.ci/run` started one, else an SQLite file both
/// instances open.
fn database() -> (String, Option<std::path::PathBuf>) {
    if let Ok(url) = std::env::var("TOWER_WARDEN_POSTGRES_URL")
        && !url.is_empty()
    {
        return (url, None);
    }
    let path = std::env::temp_dir().join(format!("tw-scale-out-{}.db", std::process::id()));
    (format!("sqlite://{}", path.display()), Some(path))
}

#[tokio::test]
async fn a_client_moves_between_instances_mid_session() {
    let Some(redis) = redis_support::redis_url("a_client_moves_between_instances_mid_session")
    else {
        return;
    };
    let (database, file) = database();
    let a = instance(&redis, &database).await;
    let b = instance(&redis, &database).await;
    let alice = bearer("alice");

    // Initialize on A.
    let reply = post(
        &a.url(),
        &[("authorization", alice.as_str())],
        &initialize("2025-06-18"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let session = reply.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let reply = in_session(&a.url(), &alice, &session, INITIALIZED).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);

    // The next calls land on B, then A, then B again.
    for (n, server) in [&b, &a, &b].into_iter().enumerate() {
        let id = n as u64 + 2;
        let reply = in_session(&server.url(), &alice, &session, &echo(id, "moved")).await;
        assert_eq!(reply.status, StatusCode::OK, "call {id}: {:?}", reply.body);
        let message = reply.message();
        assert_eq!(message["id"], id);
        assert_eq!(
            message["result"]["content"][0]["text"], "moved",
            "{message}"
        );
    }

    // Mallory holds the id: on either instance it is an unknown session.
    let mallory = bearer("mallory");
    for server in [&a, &b] {
        let reply = in_session(&server.url(), &mallory, &session, &echo(9, "stolen")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
    // ...and her attempt did not end alice's session anywhere.
    let reply = in_session(&b.url(), &alice, &session, &echo(10, "still mine")).await;
    assert_eq!(reply.status, StatusCode::OK);

    // A gateway connection made through A is there on B (shared store).
    let created = send(
        Method::POST,
        &format!("http://{}/api/v1/mcp/connections", a.addr),
        &[("authorization", alice.as_str()), ("content-type", "application/json")],
        json!({"server_name": format!("up{}", std::process::id()), "url": "https://mcp.example.com/mcp"}).to_string(),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let on_b = format!("http://{}/api/v1/mcp/connections/{id}", b.addr);
    let auth = [("authorization", alice.as_str())];
    let seen = send(Method::GET, &on_b, &auth, "").await;
    assert_eq!(seen.status, StatusCode::OK);
    let deleted = send(Method::DELETE, &on_b, &auth, "").await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    // The owner ends the session on B; a third instance does not know it.
    let ended = send(
        Method::DELETE,
        &b.url(),
        &[
            ("authorization", alice.as_str()),
            ("mcp-session-id", session.as_str()),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        "",
    )
    .await;
    assert!(ended.status.is_success(), "{}", ended.status);
    let c = instance(&redis, &database).await;
    let reply = in_session(&c.url(), &alice, &session, &echo(11, "gone")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);

    for server in [a, b, c] {
        server.stop().await;
    }
    if let Some(file) = file {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
        }
    }
}

#[tokio::test]
async fn a_session_survives_the_instance_that_opened_it() {
    let Some(redis) = redis_support::redis_url("a_session_survives_the_instance_that_opened_it")
    else {
        return;
    };
    let a = instance(&redis, "sqlite::memory:").await;
    let b = instance(&redis, "sqlite::memory:").await;
    let alice = bearer("alice");
    let reply = post(
        &a.url(),
        &[("authorization", alice.as_str())],
        &initialize("2025-06-18"),
    )
    .await;
    let session = reply.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let reply = in_session(&a.url(), &alice, &session, INITIALIZED).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let reply = in_session(&a.url(), &alice, &session, &echo(2, "on A")).await;
    assert_eq!(reply.message()["result"]["content"][0]["text"], "on A");
    // A goes away (a deploy, a crash): B serves the session.
    a.stop().await;
    let reply = in_session(&b.url(), &alice, &session, &echo(3, "on B")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.message()["result"]["content"][0]["text"], "on B");
    b.stop().await;
}
