//! The reference server's rate limits, served on 127.0.0.1: per address
//! before authentication, per principal after it, per tool, and shared
//! through Redis (with the outage and the recovery).
//!
//! The Redis tests use `TOWER_WARDEN_REDIS_URL` or a `redis-server` of their
//! own; without them they say why and pass, unless
//! `TOWER_WARDEN_REQUIRE_SERVICES=1`.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

#[allow(dead_code)]
#[path = "support/redis.rs"]
mod redis_support;

use std::time::Duration;

use app::settings::Settings;
use http::{Method, StatusCode};
use mcp_support::{Reply, Server, initialize, open_session, post, send};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "rate-limit-test-secret-of-at-least-32-bytes";

/// A bearer token for `subject` under [`SECRET`], valid for an hour.
fn bearer(subject: &str) -> String {
    let token = mcp_support::sign_hs256(SECRET, json!({"sub": subject, "scope": "*"}));
    format!("Bearer {token}")
}

/// The reference server with [`SECRET`] and `vars`.
async fn start(vars: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
    ];
    all.extend_from_slice(vars);
    let config = Settings::from_vars(all).unwrap();
    let shutdown = CancellationToken::new();
    let router = app::router(&config, &shutdown).await.unwrap();
    Server::serve(router, shutdown).await
}

async fn health(server: &Server) -> Value {
    let reply = send(
        Method::GET,
        &format!("http://{}/health", server.addr),
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.json()
}

fn header<'a>(reply: &'a Reply, name: &str) -> Vec<&'a str> {
    reply
        .headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn assert_rate_limited(reply: &Reply) {
    assert_eq!(
        reply.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        reply.body
    );
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(reply.json()["code"], "rate_limited");
    let retry: u64 = reply.headers[http::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn over_quota_is_429_with_retry_after_and_headers_and_health_stays_open() {
    let server = start(&[("MCP_RATE_LIMIT_RPM", "3")]).await;
    let url = server.url();
    let alice = bearer("alice");
    for remaining in [2, 1, 0] {
        let reply = post(
            &url,
            &[("authorization", &alice)],
            &initialize("2025-06-18"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        // One item per limit, innermost first: the principal's, then the
        // address's.
        assert_eq!(
            header(&reply, "ratelimit-policy"),
            ["\"principal\";q=3;w=60", "\"ip\";q=3;w=60"]
        );
        let items = header(&reply, "ratelimit");
        assert_eq!(items.len(), 2);
        assert!(items[0].starts_with(&format!("\"principal\";r={remaining};t=")));
        assert!(items[1].starts_with(&format!("\"ip\";r={remaining};t=")));
    }
    let refused = post(
        &url,
        &[("authorization", &alice)],
        &initialize("2025-06-18"),
    )
    .await;
    assert_rate_limited(&refused);
    // Probes are never limited.
    for _ in 0..5 {
        assert_eq!(health(&server).await["status"], "healthy");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_flood_is_cut_off_per_address_before_auth() {
    let server = start(&[("MCP_RATE_LIMIT_RPM", "5")]).await;
    let url = server.url();
    let mut statuses = Vec::new();
    for i in 0..8 {
        // Guessing tokens: each one a different forgery.
        let forged = format!("Bearer not.a-token.{i}");
        let reply = post(
            &url,
            &[("authorization", &forged)],
            &initialize("2025-06-18"),
        )
        .await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // The address is spent for everyone behind it, the valid token too:
    // the per-address limit stands in front of authentication.
    let reply = post(
        &url,
        &[("authorization", &bearer("alice"))],
        &initialize("2025-06-18"),
    )
    .await;
    assert_rate_limited(&reply);
    server.stop().await;
}

#[tokio::test]
async fn a_principal_is_limited_across_addresses() {
    // Behind a trusted proxy each caller has its own address; alice's
    // quota follows her from one address to the next.
    let server = start(&[
        ("MCP_RATE_LIMIT_RPM", "2"),
        ("MCP_TRUST_X_FORWARDED", "true"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    let url = server.url();
    let alice = bearer("alice");
    let from = |ip: &'static str| [("authorization", alice.as_str()), ("x-forwarded-for", ip)];
    let first = post(&url, &from("203.0.113.1"), &initialize("2025-06-18")).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = post(&url, &from("203.0.113.2"), &initialize("2025-06-18")).await;
    assert_eq!(second.status, StatusCode::OK);
    let third = post(&url, &from("203.0.113.3"), &initialize("2025-06-18")).await;
    assert_rate_limited(&third);
    // The refusing limit's item, then the address's (which admitted it).
    assert_eq!(
        header(&third, "ratelimit-policy"),
        ["\"principal\";q=2;w=60", "\"ip\";q=2;w=60"]
    );
    // Bob, from a fresh address, is not affected.
    let bob = bearer("bob");
    let reply = post(
        &url,
        &[
            ("authorization", bob.as_str()),
            ("x-forwarded-for", "203.0.113.9"),
        ],
        &initialize("2025-06-18"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn anonymous_callers_are_grouped_by_the_configured_ipv6_prefix() {
    // Authentication off: each anonymous caller's per-principal allowance
    // follows its address, grouped like the per-address limit's, by
    // `MCP_RATE_LIMIT_IPV6_PREFIX` (before: always by /64).
    let server = start(&[
        ("MCP_AUTH_MODE", "none"),
        ("MCP_RATE_LIMIT_RPM", "2"),
        ("MCP_RATE_LIMIT_IPV6_PREFIX", "96"),
        ("MCP_TRUST_X_FORWARDED", "true"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    let url = server.url();
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    let remaining = |reply: &Reply| {
        header(reply, "ratelimit")
            .iter()
            .map(|item| item.split(";t=").next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    // Two addresses of one /96 share both allowances.
    let first = post(&url, &from("2001:db8::1:0:1"), &initialize("2025-06-18")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(remaining(&first), ["\"principal\";r=1", "\"ip\";r=1"]);
    let second = post(&url, &from("2001:db8::1:0:2"), &initialize("2025-06-18")).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(remaining(&second), ["\"principal\";r=0", "\"ip\";r=0"]);
    assert_rate_limited(&post(&url, &from("2001:db8::1:0:3"), &initialize("2025-06-18")).await);
    // The next /96 of the same /64 has allowances of its own.
    for left in ["1", "0"] {
        let reply = post(&url, &from("2001:db8::2:0:1"), &initialize("2025-06-18")).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(
            remaining(&reply),
            [
                format!("\"principal\";r={left}"),
                format!("\"ip\";r={left}")
            ]
        );
    }
    server.stop().await;
}

fn call(id: u32, tool: &str, arguments: &Value) -> String {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}
    })
    .to_string()
}

#[tokio::test]
async fn per_tool_quotas_limit_each_caller_and_tool() {
    let server = start(&[
        ("MCP_RATE_LIMIT_RPM", "100"),
        ("MCP_TOOL_RATE_LIMITS", r#"{"echo": 2}"#),
    ])
    .await;
    let url = server.url();
    let alice = bearer("alice");
    let session = open_session(&url, &[("authorization", &alice)], "2025-06-18").await;
    let headers = [
        ("authorization", alice.as_str()),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let echo = json!({"text": "hi"});
    for id in 1..=2 {
        let reply = post(&url, &headers, &call(id, "echo", &echo)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.message()["result"]["content"][0]["text"], "hi");
        assert!(header(&reply, "ratelimit-policy").contains(&"\"echo\";q=2;w=60"));
    }
    let refused = post(&url, &headers, &call(3, "echo", &echo)).await;
    assert_rate_limited(&refused);
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        ["\"echo\";q=2;w=60", "\"ip\";q=100;w=60"]
    );
    // Other tools and methods are not counted against echo.
    let add = post(&url, &headers, &call(4, "add", &json!({"a": 1, "b": 2}))).await;
    assert_eq!(add.status, StatusCode::OK);
    assert!(add.message()["result"].is_object());
    // Bob has his own allowance of echo.
    let bob = bearer("bob");
    let bob_session = open_session(&url, &[("authorization", &bob)], "2025-06-18").await;
    let reply = post(
        &url,
        &[
            ("authorization", bob.as_str()),
            ("mcp-session-id", bob_session.as_str()),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        &call(1, "echo", &echo),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn disabled_means_no_limit_and_no_headers() {
    let server = start(&[
        ("MCP_RATE_LIMIT_ENABLED", "false"),
        ("MCP_RATE_LIMIT_RPM", "1"),
    ])
    .await;
    let url = server.url();
    let alice = bearer("alice");
    for _ in 0..3 {
        let reply = post(
            &url,
            &[("authorization", &alice)],
            &initialize("2025-06-18"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.headers.get("ratelimit").is_none());
    }
    assert_eq!(
        health(&server).await["rate_limit"],
        json!({"enabled": false})
    );
    server.stop().await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn two_instances_share_one_quota_through_redis() {
    let Some(redis) = redis_support::redis_url("two_instances_share_one_quota_through_redis")
    else {
        return;
    };
    let prefix = redis_support::unique_prefix("server-shared");
    let vars = [
        ("MCP_RATE_LIMIT_RPM", "4"),
        ("MCP_RATE_LIMIT_STORAGE", "redis"),
        ("MCP_REDIS_URL", redis.as_str()),
        ("MCP_RATE_LIMIT_REDIS_PREFIX", prefix.as_str()),
    ];
    let a = start(&vars).await;
    let b = start(&vars).await;
    let alice = bearer("alice");
    let mut statuses = Vec::new();
    for server in [&a, &b, &a, &b, &a, &b] {
        let reply = post(
            &server.url(),
            &[("authorization", &alice)],
            &initialize("2025-06-18"),
        )
        .await;
        statuses.push(reply.status.as_u16());
    }
    // Four in all, not four each.
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    let health = health(&a).await;
    assert_eq!(health["status"], "healthy");
    assert_eq!(
        health["rate_limit"],
        json!({"enabled": true, "storage": "redis", "degraded": false})
    );
    a.stop().await;
    b.stop().await;
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_outage_degrades_without_5xx_keeps_limiting_and_recovers() {
    use redis_support::{OwnServer, free_port, have_redis_server};

    if !have_redis_server("redis_outage_degrades_without_5xx_keeps_limiting_and_recovers") {
        return;
    }
    let port = free_port();
    let redis = OwnServer::start(port).expect("redis-server starts");
    let url = redis.url();
    let server = start(&[
        ("MCP_RATE_LIMIT_RPM", "3"),
        ("MCP_RATE_LIMIT_STORAGE", "redis"),
        ("MCP_REDIS_URL", url.as_str()),
    ])
    .await;
    let mcp = server.url();
    let alice = bearer("alice");
    let ask = || async {
        post(
            &mcp,
            &[("authorization", &alice)],
            &initialize("2025-06-18"),
        )
        .await
        .status
        .as_u16()
    };
    assert_eq!(ask().await, 200);
    assert_eq!(health(&server).await["status"], "healthy");

    redis.stop();
    // Decided in memory now, with the same quota, counted afresh: three
    // more, then 429. Never a 5xx.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(ask().await);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let degraded = health(&server).await;
    assert_eq!(degraded["status"], "degraded");
    assert_eq!(degraded["rate_limit"]["degraded"], true);

    // Redis back on the same port: the next decision after the retry
    // interval goes to Redis again (empty: nothing was saved).
    let _redis = OwnServer::start(port).expect("redis-server starts again");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = ask().await;
        assert!(status == 200 || status == 429, "status {status}");
        if health(&server).await["status"] == "healthy" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no recovery");
    }
    assert_eq!(
        health(&server).await["rate_limit"],
        json!({"enabled": true, "storage": "redis", "degraded": false})
    );
    server.stop().await;
}

#[tokio::test]
async fn attack_spoofed_forwarded_headers_buy_no_fresh_quota() {
    // No trusted proxy configured: X-Forwarded-For and Forwarded are
    // ignored, so rotating them does not rotate the key.
    let server = start(&[("MCP_RATE_LIMIT_RPM", "2")]).await;
    let url = server.url();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let spoofed = format!("198.51.100.{i}");
        let forwarded = format!("for={spoofed}");
        let token = bearer(&format!("user-{i}"));
        let reply = post(
            &url,
            &[
                ("authorization", token.as_str()),
                ("x-forwarded-for", spoofed.as_str()),
                ("x-real-ip", spoofed.as_str()),
                ("forwarded", forwarded.as_str()),
            ],
            &initialize("2025-06-18"),
        )
        .await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    server.stop().await;
}
