//! Attacks on the reference server's gateway, on 127.0.0.1 only: upstream
//! URLs that spell a loopback address in the forms the HTTP client accepts
//! (server-side request forgery), connections stored before the rule
//! applied, and upstreams whose error text must not reach the tenant.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/app.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Method, StatusCode};
use mcp_support::{Reply, Server, open_session, post, send};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_warden::config::WardenConfig;

const SECRET: &str = "gateway-attack-secret-of-at-least-32-bytes";
const AUDIENCE: &str = "tower-warden-test";

/// A reference server with `vars` (an in-memory store unless set).
async fn start(vars: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_JWT_AUDIENCE", AUDIENCE),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ];
    for (name, value) in vars {
        all.retain(|(n, _)| n != name);
        all.push((name, value));
    }
    let config = WardenConfig::from_vars(all).unwrap();
    let shutdown = CancellationToken::new();
    let router = app::router(&config, &shutdown).await.unwrap();
    Server::serve(router, shutdown).await
}

/// Production settings: private upstreams refused.
const PRODUCTION: &[(&str, &str)] = &[("MCP_ENVIRONMENT", "production")];

fn bearer(subject: &str, namespace: &str) -> String {
    let token = mcp_support::sign_hs256(
        SECRET,
        json!({"sub": subject, "namespace": namespace, "aud": AUDIENCE, "scope": "*"}),
    );
    format!("Bearer {token}")
}

fn api(server: &Server, path: &str) -> String {
    format!("http://{}/api/v1/mcp/connections{path}", server.addr)
}

async fn call(method: Method, url: &str, auth: &str, body: Option<Value>) -> Reply {
    let mut headers = vec![("authorization", auth)];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    send(method, url, &headers, body).await
}

/// A TCP listener on 127.0.0.1 that counts the connections it accepts.
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        Self {
            port,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every spelling of 127.0.0.1 that the HTTP client's URL parser (WHATWG)
/// accepts and that `IpAddr` does not.
fn loopback_forms(port: u16) -> Vec<String> {
    [
        "2130706433",
        "127.1",
        "0x7f000001",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "017700000001",
        "127.0.0.1.",
        "127.0.0.1",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "LOCALHOST.",
    ]
    .iter()
    .map(|host| format!("http://{host}:{port}/mcp"))
    .collect()
}

#[tokio::test]
async fn attack_loopback_spellings_are_refused_at_registration_and_nothing_connects() {
    let listener = Listener::bind().await;
    let gateway = start(PRODUCTION).await;
    let alice = bearer("alice", "acme");
    for url in loopback_forms(listener.port) {
        let reply = call(
            Method::POST,
            &api(&gateway, ""),
            &alice,
            Some(json!({"server_name": "x", "url": url})),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{url}: {:?}",
            reply.body
        );
        assert_eq!(reply.json()["code"], "upstream_forbidden", "{url}");
    }
    let listed = call(Method::GET, &api(&gateway, ""), &alice, None).await;
    assert_eq!(listed.json()["connections"], json!([]));
    assert_eq!(listener.accepted(), 0, "the gateway connected to loopback");
    gateway.stop().await;
}

/// A temporary SQLite file, shared by two servers in turn.
fn database() -> (std::path::PathBuf, String) {
    let dir = std::env::temp_dir().join(format!(
        "tower-warden-attack-gateway-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let url = format!("sqlite://{}/mcp.db", dir.display());
    (dir, url)
}

#[tokio::test]
async fn attack_connections_stored_before_the_rule_cannot_reach_loopback_on_any_path() {
    let listener = Listener::bind().await;
    let (dir, url) = database();
    let alice = bearer("alice", "acme");
    // Stored while private upstreams were allowed.
    let open = start(&[
        ("MCP_DATABASE_URL", url.as_str()),
        ("MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS", "true"),
    ])
    .await;
    let mut ids = Vec::new();
    for (n, upstream) in loopback_forms(listener.port).into_iter().enumerate() {
        let reply = call(
            Method::POST,
            &api(&open, ""),
            &alice,
            Some(json!({"server_name": format!("s{n}"), "url": upstream, "timeout": 2})),
        )
        .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{upstream}");
        ids.push(reply.json()["id"].as_str().unwrap().to_owned());
    }
    open.stop().await;

    let gateway = start(&[
        ("MCP_DATABASE_URL", url.as_str()),
        ("MCP_ENVIRONMENT", "production"),
    ])
    .await;
    for id in &ids {
        let tools = call(
            Method::GET,
            &api(&gateway, &format!("/{id}/tools")),
            &alice,
            None,
        )
        .await;
        assert_eq!(tools.status, StatusCode::FORBIDDEN, "{:?}", tools.body);
        assert_eq!(tools.json()["code"], "upstream_forbidden");
        let run = call(
            Method::POST,
            &api(&gateway, &format!("/{id}/tools/echo/execute")),
            &alice,
            Some(json!({"arguments": {"text": "hi"}})),
        )
        .await;
        assert_eq!(run.status, StatusCode::FORBIDDEN, "{:?}", run.body);
        assert_eq!(run.json()["code"], "upstream_forbidden");
    }
    // Over MCP: no upstream tool is listed, a call is a tool error.
    let auth = [("authorization", alice.as_str())];
    let session = open_session(&gateway.url(), &auth, "2025-06-18").await;
    let headers = [
        ("authorization", alice.as_str()),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let listed = post(
        &gateway.url(),
        &headers,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    let names = listed.message()["result"]["tools"].to_string();
    assert!(!names.contains("s0."), "{names}");
    let called = post(
        &gateway.url(),
        &headers,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"s0.echo","arguments":{"text":"hi"}}}"#,
    )
    .await;
    let result = &called.message()["result"];
    assert_eq!(result["isError"], true, "{result}");
    assert!(
        result.to_string().contains("may not be reached"),
        "{result}"
    );

    assert_eq!(listener.accepted(), 0, "the gateway connected to loopback");
    gateway.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn special_purpose_addresses_are_not_public() {
    use app::upstream::is_public;
    for ip in [
        "0.0.0.0",
        "0.1.2.3",
        "10.1.2.3",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.255.0.1",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.9",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.0.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.7",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "::8.8.8.8",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "64:ff9b::808:808",
        "64:ff9b:1::a00:1",
        "100::1",
        "2001::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:2::1",
        "2001:db8::1",
        "2002:7f00:1::1",
        "2002:c000:0204::1",
        "3fff::1",
        "5f00::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
    ] {
        let parsed: IpAddr = ip.parse().unwrap();
        assert!(!is_public(parsed), "{ip} is not public");
    }
    for ip in [
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.1",
        "172.32.0.1",
        "192.0.1.1",
        "198.20.0.1",
        "223.255.255.254",
        "::ffff:8.8.8.8",
        "2001:4860:4860::8888",
        "2606:4700:4700::1111",
        "2a00:1450::1",
        "64:ff9b:2::1",
    ] {
        let parsed: IpAddr = ip.parse().unwrap();
        assert!(is_public(parsed), "{ip} is public");
    }
}

#[test]
fn the_url_check_reads_urls_as_the_http_client_does() {
    let reach = app::upstream::Reach {
        allow_private: false,
    };
    for url in loopback_forms(8080) {
        assert!(reach.check_url(&url).is_err(), "{url}");
    }
    for url in [
        "http://[64:ff9b::7f00:1]/mcp",
        "http://[2002:7f00:1::1]/mcp",
        "http://[2001::1]/mcp",
        "http://foo.localhost/mcp",
        "http://0/mcp",
        "http://0x0a.1/mcp",
    ] {
        assert!(reach.check_url(url).is_err(), "{url}");
    }
    assert!(reach.check_url("https://mcp.example.com/mcp").is_ok());
    assert!(reach.check_url("http://8.8.8.8/mcp").is_ok());
    let open = app::upstream::Reach {
        allow_private: true,
    };
    assert!(open.check_url("http://127.1/mcp").is_ok());
}

#[tokio::test]
async fn attack_the_connector_drops_a_loopback_socket_before_sending_a_byte() {
    // The backstop under the URL check: a client the gateway builds, asked
    // directly for a loopback URL, connects (the literal skips the
    // resolver) but drops the socket before writing the request.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let task = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    counter.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    let client = app::upstream::Reach {
        allow_private: false,
    }
    .http_client()
    .unwrap();
    for host in ["127.0.0.1", "2130706433", "[::ffff:127.0.0.1]"] {
        // The listener never answers: without the check the send would
        // wait for ever, so it is bounded.
        let sent = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client
                .post(format!("http://{host}:{port}/mcp"))
                .body("{}")
                .send(),
        )
        .await;
        assert!(
            matches!(sent, Ok(Err(_))),
            "{host}: the request was not refused at once: {sent:?}"
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        received.load(Ordering::SeqCst),
        0,
        "a request reached loopback"
    );
    task.abort();
}

const MARKER: &str = "upstream-secret-marker-7f3a";

/// An HTTP server on 127.0.0.1 answering every request with `status`,
/// `content_type` and `body` (a web server that is not an MCP server).
async fn stub(status: StatusCode, content_type: &'static str, body: String) -> Server {
    let router = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { (status, [(http::header::CONTENT_TYPE, content_type)], body) }
    });
    Server::serve(router, CancellationToken::new()).await
}

#[tokio::test]
async fn attack_upstream_error_text_never_reaches_the_tenant() {
    let stubs = [
        stub(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("db password: {MARKER}"),
        )
        .await,
        stub(
            StatusCode::OK,
            "application/json",
            format!(r#"{{"secret":"{MARKER}"}}"#),
        )
        .await,
        stub(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/json",
            format!(r#"{{"jsonrpc":"2.0","id":0,"error":{{"code":-32000,"message":"{MARKER}"}}}}"#),
        )
        .await,
        stub(StatusCode::OK, "text/html", format!("<p>{MARKER}</p>")).await,
    ];
    // Development: private upstreams allowed, so the stubs are reached.
    let gateway = start(&[]).await;
    let alice = bearer("alice", "acme");
    let auth = [("authorization", alice.as_str())];
    let session = open_session(&gateway.url(), &auth, "2025-06-18").await;
    let headers = [
        ("authorization", alice.as_str()),
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    for (n, upstream) in stubs.iter().enumerate() {
        let created = call(
            Method::POST,
            &api(&gateway, ""),
            &alice,
            Some(json!({"server_name": format!("s{n}"), "url": upstream.url(), "timeout": 5})),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let id = created.json()["id"].as_str().unwrap().to_owned();

        let tools = call(
            Method::GET,
            &api(&gateway, &format!("/{id}/tools")),
            &alice,
            None,
        )
        .await;
        assert_eq!(tools.status, StatusCode::BAD_GATEWAY, "{:?}", tools.body);
        let text = String::from_utf8_lossy(&tools.body);
        assert!(!text.contains(MARKER), "stub {n}: {text}");
        assert!(
            matches!(
                tools.json()["code"].as_str(),
                Some("upstream_unavailable" | "upstream_refused")
            ),
            "{:?}",
            tools.body
        );

        let run = call(
            Method::POST,
            &api(&gateway, &format!("/{id}/tools/echo/execute")),
            &alice,
            Some(json!({"arguments": {"text": "hi"}})),
        )
        .await;
        assert_eq!(run.status, StatusCode::BAD_GATEWAY, "{:?}", run.body);
        let text = String::from_utf8_lossy(&run.body);
        assert!(!text.contains(MARKER), "stub {n}: {text}");

        let called = post(
            &gateway.url(),
            &headers,
            &format!(
                r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"s{n}.echo","arguments":{{"text":"hi"}}}}}}"#
            ),
        )
        .await;
        let result = called.message()["result"].clone();
        assert_eq!(result["isError"], true, "stub {n}: {result}");
        assert!(!result.to_string().contains(MARKER), "stub {n}: {result}");
    }
    gateway.stop().await;
    for upstream in stubs {
        upstream.stop().await;
    }
}

const UPSTREAM_SECRET: &str = "gateway-attack-upstream-secret-32-bytes!!";

/// What a counting upstream saw.
#[derive(Default)]
struct Counts {
    /// `tools/list` requests.
    lists: AtomicUsize,
    /// `tools/list` requests being answered now, and the most at once.
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// A reference server (its own secret) that counts the `tools/list`
/// requests it gets and holds each for `delay`.
async fn counting_upstream(counts: Arc<Counts>, delay: std::time::Duration) -> Server {
    let config = WardenConfig::from_vars([
        ("MCP_JWT_SECRET", UPSTREAM_SECRET),
        ("MCP_JWT_AUDIENCE", AUDIENCE),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ])
    .unwrap();
    let shutdown = CancellationToken::new();
    let router = app::router(&config, &shutdown).await.unwrap();
    let router = router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let counts = Arc::clone(&counts);
            async move {
                let (parts, body) = request.into_parts();
                let bytes = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let listing = bytes.windows(10).any(|w| w == b"tools/list");
                if listing {
                    counts.lists.fetch_add(1, Ordering::SeqCst);
                    let now = counts.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    counts.peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                }
                let request = axum::extract::Request::from_parts(parts, bytes.into());
                let response = next.run(request).await;
                if listing {
                    counts.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                response
            }
        },
    ));
    Server::serve(router, shutdown).await
}

/// Registers `upstream` as `name` for `auth`'s namespace.
async fn register(gateway: &Server, auth: &str, name: &str, upstream: &Server) -> Reply {
    let credential = mcp_support::sign_hs256(
        UPSTREAM_SECRET,
        json!({"sub": "gateway", "namespace": "default", "aud": AUDIENCE, "scope": "*"}),
    );
    call(
        Method::POST,
        &api(gateway, ""),
        auth,
        Some(json!({
            "server_name": name,
            "url": upstream.url(),
            "timeout": 5,
            "credential": credential,
        })),
    )
    .await
}

/// An initialized MCP session's headers for `auth` on `gateway`.
async fn mcp_headers(gateway: &Server, auth: &str) -> String {
    open_session(&gateway.url(), &[("authorization", auth)], "2025-06-18").await
}

async fn mcp_tool_names(gateway: &Server, auth: &str, session: &str) -> Vec<String> {
    let headers = [
        ("authorization", auth),
        ("mcp-session-id", session),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let listed = post(
        &gateway.url(),
        &headers,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    listed.message()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn attack_a_namespace_cannot_register_more_connections_than_the_cap() {
    let upstream = counting_upstream(Arc::default(), std::time::Duration::ZERO).await;
    let gateway = start(&[("MCP_GATEWAY_MAX_CONNECTIONS", "3")]).await;
    let alice = bearer("alice", "acme");
    let mut ids = Vec::new();
    for n in 0..3 {
        let reply = register(&gateway, &alice, &format!("s{n}"), &upstream).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        ids.push(reply.json()["id"].as_str().unwrap().to_owned());
    }
    let over = register(&gateway, &alice, "s3", &upstream).await;
    assert_eq!(over.status, StatusCode::CONFLICT, "{:?}", over.body);
    assert_eq!(over.json()["code"], "connection_limit");
    let listed = call(Method::GET, &api(&gateway, ""), &alice, None).await;
    assert_eq!(listed.json()["connections"].as_array().unwrap().len(), 3);
    // Another namespace has its own room.
    let bob = bearer("bob", "globex");
    let other = register(&gateway, &bob, "s0", &upstream).await;
    assert_eq!(other.status, StatusCode::CREATED, "{:?}", other.body);
    // Deleting one makes room again.
    let deleted = call(
        Method::DELETE,
        &api(&gateway, &format!("/{}", ids[0])),
        &alice,
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let again = register(&gateway, &alice, "s3", &upstream).await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
    gateway.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn tool_lists_are_cached_per_connection_within_the_ttl_and_dropped_on_delete() {
    let counts = Arc::new(Counts::default());
    let upstream = counting_upstream(Arc::clone(&counts), std::time::Duration::ZERO).await;
    let gateway = start(&[("MCP_GATEWAY_TOOLS_CACHE_TTL", "60000")]).await;
    let alice = bearer("alice", "acme");
    let created = register(&gateway, &alice, "up", &upstream).await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let session = mcp_headers(&gateway, &alice).await;
    for _ in 0..3 {
        let names = mcp_tool_names(&gateway, &alice, &session).await;
        assert!(names.iter().any(|n| n.starts_with("up.")), "{names:?}");
        let rest = call(
            Method::GET,
            &api(&gateway, &format!("/{id}/tools")),
            &alice,
            None,
        )
        .await;
        assert_eq!(rest.status, StatusCode::OK, "{:?}", rest.body);
    }
    assert_eq!(
        counts.lists.load(Ordering::SeqCst),
        1,
        "one listing within the TTL"
    );
    // Deleted: nothing of it is offered (the cache went with it).
    let deleted = call(
        Method::DELETE,
        &api(&gateway, &format!("/{id}")),
        &alice,
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let names = mcp_tool_names(&gateway, &alice, &session).await;
    assert!(!names.iter().any(|n| n.starts_with("up.")), "{names:?}");
    gateway.stop().await;

    // A short TTL: a listing after it expired asks the upstream again.
    let counts_short = Arc::new(Counts::default());
    let upstream_short =
        counting_upstream(Arc::clone(&counts_short), std::time::Duration::ZERO).await;
    let gateway = start(&[("MCP_GATEWAY_TOOLS_CACHE_TTL", "40")]).await;
    let created = register(&gateway, &alice, "up", &upstream_short).await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = api(&gateway, &format!("/{id}/tools"));
    assert_eq!(
        call(Method::GET, &path, &alice, None).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    assert_eq!(
        call(Method::GET, &path, &alice, None).await.status,
        StatusCode::OK
    );
    assert_eq!(counts_short.lists.load(Ordering::SeqCst), 2);
    gateway.stop().await;
    upstream.stop().await;
    upstream_short.stop().await;
}

#[tokio::test]
async fn attack_one_tools_list_never_asks_more_upstreams_at_once_than_the_fanout() {
    let counts = Arc::new(Counts::default());
    let upstream =
        counting_upstream(Arc::clone(&counts), std::time::Duration::from_millis(30)).await;
    let gateway = start(&[
        ("MCP_GATEWAY_FANOUT", "2"),
        ("MCP_GATEWAY_TOOLS_CACHE_TTL", "0"),
    ])
    .await;
    let alice = bearer("alice", "acme");
    for n in 0..6 {
        let reply = register(&gateway, &alice, &format!("s{n}"), &upstream).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
    }
    let session = mcp_headers(&gateway, &alice).await;
    let names = mcp_tool_names(&gateway, &alice, &session).await;
    for n in 0..6 {
        let prefix = format!("s{n}.");
        assert!(
            names.iter().any(|name| name.starts_with(&prefix)),
            "{names:?}"
        );
    }
    assert_eq!(counts.lists.load(Ordering::SeqCst), 6);
    let peak = counts.peak.load(Ordering::SeqCst);
    assert!((1..=2).contains(&peak), "{peak} listings at once");
    gateway.stop().await;
    upstream.stop().await;
}

const KEY: &str = "8f1c2d3e4a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c7d8e9f0a1b2c3d4e5f";

#[tokio::test]
async fn attack_stored_credentials_are_encrypted_and_bound_to_their_row() {
    let counts = Arc::new(Counts::default());
    let upstream = counting_upstream(Arc::clone(&counts), std::time::Duration::ZERO).await;
    let (dir, url) = database();
    let gateway = start(&[
        ("MCP_DATABASE_URL", url.as_str()),
        ("MCP_GATEWAY_CREDENTIAL_KEY", KEY),
        ("MCP_GATEWAY_TOOLS_CACHE_TTL", "0"),
    ])
    .await;
    let alice = bearer("alice", "acme");
    let first = register(&gateway, &alice, "first", &upstream).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let first = first.json()["id"].as_str().unwrap().to_owned();
    let second = register(&gateway, &alice, "second", &upstream).await;
    let second = second.json()["id"].as_str().unwrap().to_owned();

    // The upstream accepts only its own token: it got the right bearer.
    let tools = call(
        Method::GET,
        &api(&gateway, &format!("/{first}/tools")),
        &alice,
        None,
    )
    .await;
    assert_eq!(tools.status, StatusCode::OK, "{:?}", tools.body);
    assert_eq!(counts.lists.load(Ordering::SeqCst), 1);

    // The row holds no plain credential.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT id, credential FROM mcp_connections ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 2);
    let token_start = mcp_support::sign_hs256(UPSTREAM_SECRET, json!({}))
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    for (id, credential) in &stored {
        assert!(credential.starts_with("aes256gcm:"), "{id}: {credential}");
        assert!(!credential.contains(&token_start), "{id}: a JWT in the row");
        assert!(!credential.contains("eyJ"), "{id}: a JWT in the row");
    }
    assert_ne!(stored[0].1, stored[1].1, "a nonce per record");

    // The first row's ciphertext moved to the second row does not decrypt:
    // refused cleanly, the upstream not called.
    let sealed = &stored.iter().find(|(id, _)| *id == first).unwrap().1;
    sqlx::query("UPDATE mcp_connections SET credential = $1 WHERE id = $2")
        .bind(sealed)
        .bind(&second)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    for path in [
        format!("/{second}/tools"),
        format!("/{second}/tools/echo/execute"),
    ] {
        let method = if path.ends_with("execute") {
            Method::POST
        } else {
            Method::GET
        };
        let reply = call(method, &api(&gateway, &path), &alice, Some(json!({}))).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{path}: {:?}",
            reply.body
        );
        assert_eq!(reply.json()["code"], "upstream_forbidden");
    }
    assert_eq!(counts.lists.load(Ordering::SeqCst), 1);
    // The listing still works, and the first row still decrypts.
    let listed = call(Method::GET, &api(&gateway, ""), &alice, None).await;
    assert_eq!(listed.json()["connections"].as_array().unwrap().len(), 2);
    let tools = call(
        Method::GET,
        &api(&gateway, &format!("/{first}/tools")),
        &alice,
        None,
    )
    .await;
    assert_eq!(tools.status, StatusCode::OK, "{:?}", tools.body);
    gateway.stop().await;
    upstream.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn attack_without_a_key_production_refuses_to_store_a_credential() {
    let gateway = start(PRODUCTION).await;
    let alice = bearer("alice", "acme");
    let with = call(
        Method::POST,
        &api(&gateway, ""),
        &alice,
        Some(json!({"server_name": "x", "url": "https://mcp.example.com/mcp", "credential": "s3cret"})),
    )
    .await;
    assert_eq!(with.status, StatusCode::BAD_REQUEST, "{:?}", with.body);
    assert_eq!(with.json()["code"], "invalid_request");
    assert!(String::from_utf8_lossy(&with.body).contains("MCP_GATEWAY_CREDENTIAL_KEY"));
    let listed = call(Method::GET, &api(&gateway, ""), &alice, None).await;
    assert_eq!(listed.json()["connections"], json!([]));
    // Without a credential nothing needs the key.
    let without = call(
        Method::POST,
        &api(&gateway, ""),
        &alice,
        Some(json!({"server_name": "x", "url": "https://mcp.example.com/mcp"})),
    )
    .await;
    assert_eq!(without.status, StatusCode::CREATED, "{:?}", without.body);
    gateway.stop().await;
}

#[test]
fn a_credential_key_that_is_not_64_hex_digits_stops_start_up() {
    for bad in ["00", &"g".repeat(64), &"0".repeat(63), &"0".repeat(66)] {
        let error = WardenConfig::from_vars([
            ("MCP_JWT_SECRET", SECRET),
            ("MCP_GATEWAY_CREDENTIAL_KEY", bad),
        ])
        .unwrap_err();
        assert_eq!(error.setting(), "MCP_GATEWAY_CREDENTIAL_KEY", "{bad}");
    }
}
