//! SIGTERM drains the reference server: no new connections, the tool call
//! in flight still gets its answer, then the server exits. Its own test
//! binary, since it signals its own process.

#![cfg(unix)]

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::time::{Duration, Instant};

use app::settings::Settings;
use http::StatusCode;
use mcp_support::{open_session, post};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "shutdown-test-secret-of-32-bytes-or-more!";

fn bearer() -> String {
    let token = mcp_support::sign_hs256(SECRET, json!({"sub": "alice", "scope": "*"}));
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_call_in_flight_finish_then_exits() {
    let config = Settings::from_vars([
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ])
    .unwrap();
    let shutdown = CancellationToken::new();
    let sessions = CancellationToken::new();
    let router = app::router(&config, &sessions).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(app::serve_draining(
        listener,
        router,
        shutdown.clone(),
        sessions.clone(),
        Duration::from_secs(10),
    ));
    tokio::spawn(app::cancel_on_signal(shutdown.clone()).unwrap());

    let url = format!("http://{addr}/mcp");
    let auth = bearer();
    let session = open_session(&url, &[("authorization", auth.as_str())], "2025-06-18").await;
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "sleep", "arguments": {"ms": 1500}}
    })
    .to_string();
    let in_flight = tokio::spawn({
        let (url, auth, session) = (url.clone(), auth.clone(), session.clone());
        async move {
            post(
                &url,
                &[
                    ("authorization", auth.as_str()),
                    ("mcp-session-id", session.as_str()),
                    ("mcp-protocol-version", "2025-06-18"),
                ],
                &call,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(5), shutdown.cancelled())
        .await
        .expect("SIGTERM cancels the shutdown token");

    // No new connections once draining.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );

    // The call in flight still gets its answer.
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let message = reply.message();
    assert_eq!(message["id"], 2);
    assert!(message["result"]["content"].is_array(), "{message}");
    assert_ne!(message["result"]["isError"], true, "{message}");

    // Then the server exits, without waiting out the whole grace period for
    // the answered request.
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("the server exits")
        .unwrap()
        .unwrap();
    assert!(sessions.is_cancelled());
    assert!(started.elapsed() < Duration::from_secs(12));
}
