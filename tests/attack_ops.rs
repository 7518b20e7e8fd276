//! The operations surface under attack, over real HTTP on 127.0.0.1: what
//! an unauthenticated caller can learn from `/health`, that memory stays
//! bounded when nobody scrapes `/metrics`, and that a slowly sent body
//! cannot hold a request past `MCP_REQUEST_TIMEOUT`.
//!
//! The tests take turns ([`SERIAL`]): the soak test reads the process's
//! resident memory, which the others would disturb.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::time::Duration;

use app::settings::Settings;
use bytes::Bytes;
use http::{Method, StatusCode};
use mcp_support::{Reply, Server, send};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// One test at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SECRET: &str = "attack-ops-test-secret-of-32-bytes-or-more";

fn bearer(subject: &str, namespace: &str, roles: &[&str]) -> String {
    let claims = json!({"sub": subject, "namespace": namespace, "roles": roles, "scope": "*"});
    format!("Bearer {}", mcp_support::sign_hs256(SECRET, claims))
}

fn config(vars: &[(&str, &str)]) -> Settings {
    let mut all = vec![
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ];
    all.extend_from_slice(vars);
    Settings::from_vars(all).unwrap()
}

async fn start(vars: &[(&str, &str)]) -> Server {
    let config = config(vars);
    let shutdown = CancellationToken::new();
    let router = app::router(&config, &shutdown).await.unwrap();
    Server::serve(router, shutdown).await
}

fn url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(Method::GET, &url(server, path), headers, Bytes::new()).await
}

/// A 127.0.0.1 address nothing listens on (bound, then released).
async fn dead_address() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn health_shows_no_tenant_connection_and_status_is_for_admins() {
    let _serial = SERIAL.lock().await;
    let server = start(&[
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "1"),
        ("CIRCUIT_BREAKER_RESET_TIMEOUT", "300"),
    ])
    .await;
    let alice = bearer("alice", "acme", &[]);
    let api = url(&server, "/api/v1/mcp/connections");
    let dead = dead_address().await;
    let reply = send(
        Method::POST,
        &api,
        &[
            ("authorization", alice.as_str()),
            ("content-type", "application/json"),
        ],
        json!({"server_name": "victim-upstream", "url": format!("http://{dead}/mcp"), "timeout": 2, "credential": "victim-credential"})
            .to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    // One failure (the threshold) opens the connection's breaker.
    let tools = format!("{api}/{id}/tools");
    let reply = send(
        Method::GET,
        &tools,
        &[("authorization", alice.as_str())],
        Bytes::new(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{:?}", reply.body);
    let reply = send(
        Method::GET,
        &tools,
        &[("authorization", alice.as_str())],
        Bytes::new(),
    )
    .await;
    assert_eq!(reply.json()["code"], "circuit_open");

    // Anyone: counts by state, nothing that names a tenant's connection.
    let health = get(&server, "/health", &[]).await;
    assert_eq!(health.status, StatusCode::OK);
    let text = health.text();
    assert!(!text.contains(&id), "a connection id on /health: {text}");
    assert!(!text.contains("victim-upstream"), "{text}");
    assert!(!text.contains(&dead.port().to_string()), "{text}");
    assert_eq!(
        health.json()["upstreams"],
        json!({"total": 1, "closed": 0, "half_open": 0, "open": 1})
    );

    // The details are the admins'.
    let reply = get(&server, "/status", &[]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let reply = get(&server, "/status", &[("authorization", alice.as_str())]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(!reply.text().contains(&id));
    let admin = bearer("root", "ops", &["admin"]);
    let reply = get(&server, "/status", &[("authorization", admin.as_str())]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let status = reply.json();
    assert_eq!(status["connections"][0]["connection_id"], id.as_str());
    assert_eq!(status["connections"][0]["breaker"]["state"], "open");
    assert_eq!(status["upstreams"]["open"], 1);
    server.stop().await;
}

/// The resident memory of this process, in bytes (`/proc/self/statm`).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// A refusal flood's worth of latency samples, recorded through the
/// reference server's exporter and never scraped: with the upkeep running
/// (here every 50 ms, as the server does every `METRICS_UPKEEP`), the
/// samples are folded into bucket counters and memory stays flat. Without
/// it every sample waits for a scrape (about 8 bytes each, so 4 million
/// samples hold more than 30 MB).
#[cfg(target_os = "linux")]
#[test]
fn unscraped_histograms_stay_bounded() {
    const ROUNDS: usize = 40;
    const PER_ROUND: usize = 100_000;
    let _serial = SERIAL.blocking_lock();
    let recorder = app::ops::prometheus_builder()
        .expect("the buckets are valid")
        .build_recorder();
    let handle = recorder.handle();
    app::ops::keep_up(handle.clone(), Duration::from_millis(50));
    let mut peak = 0;
    let before = resident_bytes();
    metrics::with_local_recorder(&recorder, || {
        let histogram = metrics::histogram!(
            tower_warden::metrics::REQUEST_DURATION,
            "outcome" => "rejected"
        );
        for _ in 0..ROUNDS {
            for i in 0..PER_ROUND {
                histogram.record(0.000_05 * ((i % 7) as f64 + 1.0));
            }
            // Bounded: one round's samples, then the upkeep's turn.
            std::thread::sleep(Duration::from_millis(60));
            peak = peak.max(resident_bytes());
        }
    });
    let samples = (ROUNDS * PER_ROUND) as u64;
    let growth = peak.saturating_sub(before);
    println!(
        "{samples} unscraped samples: resident {} KiB -> peak {} KiB (+{} KiB, {:.2} bytes/sample)",
        before / 1024,
        peak / 1024,
        growth / 1024,
        growth as f64 / samples as f64
    );
    assert!(
        growth < 8 * 1024 * 1024,
        "memory grew by {growth} bytes over {samples} unscraped samples"
    );
    // Every sample is counted in the buckets, none lost.
    let text = handle.render();
    let count = text
        .lines()
        .find_map(|line| {
            line.strip_prefix(r#"tower_warden_request_duration_seconds_count{outcome="rejected"}"#)
        })
        .map(|n| n.trim().parse::<u64>().unwrap());
    // Every sample reaches the buckets (the exporter may miss a handful
    // recorded at the very moment of a drain; the refusal counters are
    // exact).
    let count = count.expect("the histogram is rendered");
    assert!(
        count <= samples && count >= samples - samples / 10_000,
        "{count} of {samples} samples counted"
    );
    assert!(
        text.contains(
            r#"tower_warden_request_duration_seconds_bucket{outcome="rejected",le="0.0005"}"#
        ),
        "{text}"
    );
}

/// An authenticated client sends its body one byte every 200 ms: the
/// request is cut at `MCP_REQUEST_TIMEOUT` (1 s) with the 504 problem,
/// though the body is read by layers outside the service.
#[tokio::test]
async fn a_slowly_sent_body_is_cut_at_the_request_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let _serial = SERIAL.lock().await;
    let server = start(&[("MCP_REQUEST_TIMEOUT", "1")]).await;
    let auth = bearer("alice", "default", &[]);
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: {}\r\nauthorization: {auth}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 100\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let (mut read, mut write) = stream.into_split();
    let trickle = tokio::spawn(async move {
        // Bounded: at most 10 bytes, 2 s.
        for _ in 0..10 {
            if write.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let n = read.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
            if response.windows(4).any(|w| w == b"\r\n\r\n")
                && String::from_utf8_lossy(&response).contains("request_timeout")
            {
                break;
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&response).into_owned();
    assert!(answered.is_ok(), "no answer within 2 s: {text:?}");
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert!(elapsed < Duration::from_millis(1900), "{elapsed:?}");
    server.stop().await;
}
