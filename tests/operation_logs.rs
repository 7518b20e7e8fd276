//! The reference server's logs, over real HTTP on 127.0.0.1: JSON logs and
//! the audit file carry the request id, a refusal is one line at INFO, and
//! no credential is logged.
//!
//! A binary of its own: the test reads what one thread's subscriber
//! received, and `tracing` caches per call site whether anyone listens, so
//! a call site first reached by a concurrent test on another thread (with
//! no subscriber) could be cached as unheard and the line lost.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use app::settings::Settings;
use bytes::Bytes;
use http::{Method, StatusCode};
use mcp_support::{Reply, Server, post, send};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "operations-test-secret-of-32-bytes-or-more";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"ops-test","version":"1"}}}"#;

fn config(vars: &[(&str, &str)]) -> Settings {
    let mut all = vec![
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ];
    all.extend_from_slice(vars);
    Settings::from_vars(all).unwrap()
}

async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    let url = format!("http://{}{path}", server.addr);
    send(Method::GET, &url, headers, Bytes::new()).await
}

/// A log sink the test can read.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            })
            .collect()
    }
}

fn request_id(line: &Value) -> Option<&str> {
    line["span"]["request_id"].as_str()
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("tower-warden-ops-{}-{name}", std::process::id()))
}

// The test runtime is single-threaded, so the server's tasks log through
// this thread's subscriber.
#[tokio::test]
async fn json_logs_and_the_audit_file_carry_the_request_id() {
    let audit = temp_path("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let audit_text = audit.to_str().unwrap().to_owned();
    let config = config(&[
        ("MCP_LOG_FORMAT", "json"),
        ("MCP_LOG_LEVEL", "info"),
        ("MCP_AUDIT_LOG_FILE", &audit_text),
    ]);
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = app::ops::log_subscriber(&config, move || writer.clone(), None).unwrap();
    let _guard = tracing::subscriber::set_default(subscriber);
    let shutdown = CancellationToken::new();
    let server = Server::serve(app::router(&config, &shutdown).await.unwrap(), shutdown).await;

    // A forged token: refused, audited, logged.
    let reply = post(
        &server.url(),
        &[("authorization", "Bearer forged.token.value")],
        INITIALIZE,
    )
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.len() >= 16, "{id}");

    // A caller's (or proxy's) plain id is kept; a strange one is replaced.
    let kept = get(&server, "/health", &[("x-request-id", "nginx-7f3a.1")]).await;
    assert_eq!(kept.headers["x-request-id"], "nginx-7f3a.1");
    let replaced = get(&server, "/health", &[("x-request-id", "a b\"c")]).await;
    assert_ne!(replaced.headers["x-request-id"], "a b\"c");
    let other = get(&server, "/health", &[]).await;
    assert_ne!(other.headers["x-request-id"], id.as_str(), "ids are unique");
    server.stop().await;

    let lines = sink.lines();
    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|l| request_id(l) == Some(id.as_str()))
        .collect();
    let messages: Vec<&str> = of_request
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    // At INFO a refusal is its audit event only: the rejection and the
    // response lines of a refused request are DEBUG (a flood of refusals
    // must not flood the logs).
    assert_eq!(messages, ["request denied"], "{messages:?}");
    let served: Vec<&str> = lines
        .iter()
        .filter(|l| request_id(l) == Some("nginx-7f3a.1"))
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(served, ["finished processing request"], "{served:?}");
    // Every line logged while serving a request names that request.
    for line in lines.iter().filter(|l| {
        l["target"] == "tower_warden::audit" || l["target"] == "tower_http::trace::on_response"
    }) {
        assert!(request_id(line).is_some(), "no request id: {line}");
    }
    // The token never reaches the logs.
    assert!(!lines.iter().any(|l| l.to_string().contains("forged.token")));

    let audit_lines: Vec<Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(audit_lines.len(), 1, "{audit_lines:?}");
    assert_eq!(audit_lines[0]["reason"], "invalid_credentials");
    assert_eq!(audit_lines[0]["client_ip"], "127.0.0.1");
    assert_eq!(request_id(&audit_lines[0]), Some(id.as_str()));
    let _ = std::fs::remove_file(&audit);
}
