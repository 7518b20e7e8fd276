//! Attacks on the reference server's gateway, on 127.0.0.1 only: upstream
//! URLs that spell a loopback address in the forms the HTTP client accepts
//! (server-side request forgery), connections stored before the rule
//! applied, upstreams whose error text must not reach the tenant, and the
//! REST connection API as a way around the tool policy and quotas of MCP
//! (no scope, renamed connections, the same upstream twice).

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use app::settings::Settings;
use http::{Method, StatusCode};
use mcp_support::{Reply, Server, open_session, post, send};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

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
    let config = Settings::from_vars(all).unwrap();
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
        // A query of its own: these spellings are one upstream to the HTTP
        // client, which a namespace may register only once.
        let upstream = format!("{upstream}?s={n}");
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
    use app::gateway::upstream::is_public;
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
    let reach = app::gateway::upstream::Reach {
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
    let open = app::gateway::upstream::Reach {
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
    let client = app::gateway::upstream::Reach {
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
    /// `tools/call` requests.
    calls: AtomicUsize,
}

/// A reference server (its own secret) that counts the `tools/list`
/// requests it gets and holds each for `delay`.
async fn counting_upstream(counts: Arc<Counts>, delay: std::time::Duration) -> Server {
    let config = Settings::from_vars([
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
                if bytes.windows(10).any(|w| w == b"tools/call") {
                    counts.calls.fetch_add(1, Ordering::SeqCst);
                }
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
    register_url(gateway, auth, name, &upstream.url()).await
}

/// Registers the upstream at `url` as `name` for `auth`'s namespace.
async fn register_url(gateway: &Server, auth: &str, name: &str, url: &str) -> Reply {
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
            "url": url,
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
    // One upstream URL per connection (a namespace reaches an upstream once).
    let url = |n: usize| format!("{}?n={n}", upstream.url());
    for n in 0..3 {
        let reply = register_url(&gateway, &alice, &format!("s{n}"), &url(n)).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{:?}", reply.body);
        ids.push(reply.json()["id"].as_str().unwrap().to_owned());
    }
    let over = register_url(&gateway, &alice, "s3", &url(3)).await;
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
    let again = register_url(&gateway, &alice, "s3", &url(3)).await;
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

    // A listing after the TTL expired asks the upstream again.
    let counts_short = Arc::new(Counts::default());
    let upstream_short =
        counting_upstream(Arc::clone(&counts_short), std::time::Duration::ZERO).await;
    let gateway = start(&[("MCP_GATEWAY_TOOLS_CACHE_TTL", "10000")]).await;
    let created = register(&gateway, &alice, "up", &upstream_short).await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let path = api(&gateway, &format!("/{id}/tools"));
    assert_eq!(
        call(Method::GET, &path, &alice, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(Method::GET, &path, &alice, None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        counts_short.lists.load(Ordering::SeqCst),
        1,
        "within the TTL"
    );
    // Past the TTL on the tokio clock the cache reads, without waiting:
    // paused only while nothing is in flight.
    tokio::time::pause();
    tokio::time::advance(std::time::Duration::from_secs(11)).await;
    tokio::time::resume();
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
        let url = format!("{}?n={n}", upstream.url());
        let reply = register_url(&gateway, &alice, &format!("s{n}"), &url).await;
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
    let second = register_url(
        &gateway,
        &alice,
        "second",
        &format!("{}?second", upstream.url()),
    )
    .await;
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
        let error = Settings::from_vars([
            ("MCP_JWT_SECRET", SECRET),
            ("MCP_GATEWAY_CREDENTIAL_KEY", bad),
        ])
        .unwrap_err();
        assert_eq!(error.setting(), "MCP_GATEWAY_CREDENTIAL_KEY", "{bad}");
    }
}

// Finding 5: every way to run a tool — MCP over HTTP, WebSocket, the REST
// connection API — meets one tool policy and one set of quotas; the
// connection API needs a scope; renaming a connection escapes no rule.

/// A token of namespace `acme` with `scope` (space-separated).
fn bearer_scoped(subject: &str, scope: &str) -> String {
    let token = mcp_support::sign_hs256(
        SECRET,
        json!({"sub": subject, "namespace": "acme", "aud": AUDIENCE, "scope": scope}),
    );
    format!("Bearer {token}")
}

/// `POST …/{id}/tools/{tool}/execute` with `arguments`.
async fn execute(gateway: &Server, auth: &str, id: &str, tool: &str, arguments: Value) -> Reply {
    call(
        Method::POST,
        &api(gateway, &format!("/{id}/tools/{tool}/execute")),
        auth,
        Some(json!({ "arguments": arguments })),
    )
    .await
}

/// The tool names of `GET …/{id}/tools`.
async fn rest_tool_names(gateway: &Server, auth: &str, id: &str) -> Vec<String> {
    let reply = call(
        Method::GET,
        &api(gateway, &format!("/{id}/tools")),
        auth,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

/// An MCP `tools/call` of `tool` in `session`.
async fn mcp_call(gateway: &Server, auth: &str, session: &str, tool: &str) -> Reply {
    let headers = [
        ("authorization", auth),
        ("mcp-session-id", session),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": tool, "arguments": {"text": "x", "a": 1, "b": 2}}});
    post(&gateway.url(), &headers, &body.to_string()).await
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An initialized MCP session over WebSocket for `auth`.
async fn ws_session(gateway: &Server, auth: &str) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = format!("ws://{}/mcp/ws", gateway.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", auth.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "attack-gateway", "version": "1"}}});
    assert_eq!(ws_request(&mut socket, initialize).await["id"], 0);
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    ws_send(&mut socket, &initialized).await;
    socket
}

async fn ws_send(socket: &mut Socket, message: &Value) {
    use futures::SinkExt as _;
    let text = tokio_tungstenite::tungstenite::Message::Text(message.to_string().into());
    socket.send(text).await.unwrap();
}

/// Sends `message` and returns the answer with its id (10 s at most).
async fn ws_request(socket: &mut Socket, message: Value) -> Value {
    use futures::StreamExt as _;
    ws_send(socket, &message).await;
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
            .await
            .expect("an answer in time")
            .expect("the socket is open")
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
            let answer: Value = serde_json::from_str(&text).unwrap();
            if answer["id"] == message["id"] {
                return answer;
            }
        }
    }
}

/// A WebSocket `tools/call` of `tool`.
async fn ws_call(socket: &mut Socket, id: u64, tool: &str) -> Value {
    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": {"text": "x", "a": 1, "b": 2}}});
    ws_request(socket, call).await
}

fn assert_problem(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(reply.json()["code"], code, "{}", reply.text());
}

/// A gateway with `vars`, a counting upstream registered as `name` by an
/// owner holding every scope; the connection id.
async fn gateway_with(vars: &[(&str, &str)], name: &str) -> (Server, Server, Arc<Counts>, String) {
    let counts = Arc::new(Counts::default());
    let upstream = counting_upstream(Arc::clone(&counts), std::time::Duration::ZERO).await;
    let gateway = start(vars).await;
    let owner = bearer("owner", "acme");
    let created = register(&gateway, &owner, name, &upstream).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    (gateway, upstream, counts, id)
}

#[tokio::test]
async fn attack_rest_execute_of_a_tool_beyond_the_callers_scopes_is_refused_before_the_upstream() {
    let (gateway, upstream, counts, id) =
        gateway_with(&[("MCP_TOOL_SCOPES", r#"{"up.add": ["math"]}"#)], "up").await;
    let caller = bearer_scoped("caller", "gateway:connections");
    let refused = execute(&gateway, &caller, &id, "add", json!({"a": 1, "b": 2})).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "insufficient_scope");
    assert_eq!(
        refused.headers[http::header::WWW_AUTHENTICATE],
        "Bearer error=\"insufficient_scope\", error_description=\"tool `up.add` requires a scope the \
         caller was not granted: math\", scope=\"math\", resource_metadata=\"http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp\""
    );
    assert_eq!(
        counts.calls.load(Ordering::SeqCst),
        0,
        "the upstream saw a call"
    );
    // Over MCP the same caller meets the same answer.
    let session = mcp_headers(&gateway, &caller).await;
    let over_mcp = mcp_call(&gateway, &caller, &session, "up.add").await;
    assert_problem(&over_mcp, StatusCode::FORBIDDEN, "insufficient_scope");
    assert_eq!(counts.calls.load(Ordering::SeqCst), 0);
    // An open tool, and the tool with its scope, run.
    let echo = execute(&gateway, &caller, &id, "echo", json!({"text": "hi"})).await;
    assert_eq!(echo.status, StatusCode::OK, "{}", echo.text());
    let math = bearer_scoped("math", "gateway:connections math");
    let added = execute(&gateway, &math, &id, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text());
    assert_eq!(added.json()["result"]["content"][0]["text"], "3");
    assert_eq!(counts.calls.load(Ordering::SeqCst), 2);
    gateway.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn attack_rest_execute_of_an_unlisted_tool_meets_the_default_scope() {
    let (gateway, upstream, counts, id) =
        gateway_with(&[("MCP_TOOL_SCOPES", r#"{"*": ["tools:call"]}"#)], "up").await;
    let caller = bearer_scoped("caller", "gateway:connections");
    let refused = execute(&gateway, &caller, &id, "echo", json!({"text": "x"})).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "insufficient_scope");
    assert_eq!(
        refused.headers[http::header::WWW_AUTHENTICATE],
        "Bearer error=\"insufficient_scope\", error_description=\"tool `up.echo` requires a scope the \
         caller was not granted: tools:call\", scope=\"tools:call\", resource_metadata=\"http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp\""
    );
    assert!(rest_tool_names(&gateway, &caller, &id).await.is_empty());
    assert_eq!(
        counts.calls.load(Ordering::SeqCst),
        0,
        "the upstream saw a call"
    );
    let allowed = bearer_scoped("allowed", "gateway:connections tools:call");
    let echo = execute(&gateway, &allowed, &id, "echo", json!({"text": "x"})).await;
    assert_eq!(echo.status, StatusCode::OK, "{}", echo.text());
    assert_eq!(counts.calls.load(Ordering::SeqCst), 1);
    gateway.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn attack_rest_tool_listing_shows_only_what_the_caller_may_call() {
    let (gateway, upstream, _, id) =
        gateway_with(&[("MCP_TOOL_SCOPES", r#"{"up.add": ["math"]}"#)], "up").await;
    let caller = bearer_scoped("caller", "gateway:connections");
    let names = rest_tool_names(&gateway, &caller, &id).await;
    assert!(names.contains(&"echo".to_owned()), "{names:?}");
    assert!(!names.contains(&"add".to_owned()), "{names:?}");
    let math = bearer_scoped("math", "gateway:connections math");
    let names = rest_tool_names(&gateway, &math, &id).await;
    assert!(names.contains(&"add".to_owned()), "{names:?}");
    gateway.stop().await;
    upstream.stop().await;
}

/// Per-tool quotas on, the other limits out of the way.
const TOOL_QUOTAS: &[(&str, &str)] = &[
    ("MCP_RATE_LIMIT_ENABLED", "true"),
    ("MCP_RATE_LIMIT_RPM", "100000"),
];

#[tokio::test]
async fn attack_rest_executes_share_the_tool_quota_with_mcp_calls() {
    let mut vars = TOOL_QUOTAS.to_vec();
    vars.push(("MCP_TOOL_RATE_LIMITS", r#"{"up.echo": 3}"#));
    let (gateway, upstream, counts, id) = gateway_with(&vars, "up").await;
    let caller = bearer_scoped("caller", "gateway:connections");
    let session = mcp_headers(&gateway, &caller).await;
    let reply = mcp_call(&gateway, &caller, &session, "up.echo").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let mut socket = ws_session(&gateway, &caller).await;
    let reply = ws_call(&mut socket, 1, "up.echo").await;
    assert_eq!(reply["result"]["content"][0]["text"], "x", "{reply}");
    let third = execute(&gateway, &caller, &id, "echo", json!({"text": "x"})).await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.text());
    // The budget of 3 a minute is spent, whichever way the tool is asked.
    let over = execute(&gateway, &caller, &id, "echo", json!({"text": "x"})).await;
    assert_problem(&over, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = over.headers[http::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        over.headers
            .get_all("ratelimit-policy")
            .iter()
            .any(|v| v.to_str().unwrap().starts_with("\"up.echo\";q=3")),
        "{:?}",
        over.headers
    );
    let over_mcp = mcp_call(&gateway, &caller, &session, "up.echo").await;
    assert_problem(&over_mcp, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let over_ws = ws_call(&mut socket, 2, "up.echo").await;
    assert_eq!(over_ws["error"]["code"], -32029, "{over_ws}");
    assert_eq!(
        counts.calls.load(Ordering::SeqCst),
        3,
        "the upstream saw a call over the quota"
    );
    // Another tool, and another caller, have their own allowance.
    let add = execute(&gateway, &caller, &id, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(add.status, StatusCode::OK, "{}", add.text());
    let other = bearer_scoped("other", "gateway:connections");
    let echo = execute(&gateway, &other, &id, "echo", json!({"text": "x"})).await;
    assert_eq!(echo.status, StatusCode::OK, "{}", echo.text());
    gateway.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn rest_executes_count_once_against_the_per_principal_limit() {
    // 5 requests a minute per principal (and per address): the
    // registration and four executes spend it; each execute is counted
    // once, not again by the call check.
    let (gateway, upstream, counts, id) = gateway_with(
        &[
            ("MCP_RATE_LIMIT_ENABLED", "true"),
            ("MCP_RATE_LIMIT_RPM", "5"),
            ("MCP_TOOL_RATE_LIMITS", r#"{"up.add": 100}"#),
        ],
        "up",
    )
    .await;
    let owner = bearer("owner", "acme");
    for n in 0..4 {
        let reply = execute(&gateway, &owner, &id, "echo", json!({"text": "x"})).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "execute {n}: {}",
            reply.text()
        );
    }
    let over = execute(&gateway, &owner, &id, "echo", json!({"text": "x"})).await;
    assert_problem(&over, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(over.headers.contains_key(http::header::RETRY_AFTER));
    assert_eq!(counts.calls.load(Ordering::SeqCst), 4);
    gateway.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn attack_connection_routes_need_the_gateway_scope() {
    let (gateway, upstream, counts, id) = gateway_with(&[], "up").await;
    // Every tool scope there is, but not the connection API's.
    let caller = bearer_scoped("caller", "tools:call tools:* math");
    let attempts = [
        (Method::GET, String::new(), None),
        (
            Method::POST,
            String::new(),
            Some(json!({"server_name": "planted", "url": "http://127.0.0.1:9/mcp"})),
        ),
        (Method::GET, format!("/{id}"), None),
        (Method::GET, format!("/{id}/tools"), None),
        (
            Method::POST,
            format!("/{id}/tools/echo/execute"),
            Some(json!({"arguments": {"text": "x"}})),
        ),
        (Method::DELETE, format!("/{id}"), None),
    ];
    for (method, path, body) in attempts {
        let reply = call(method.clone(), &api(&gateway, &path), &caller, body).await;
        assert_problem(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
        assert_eq!(
            reply.headers[http::header::WWW_AUTHENTICATE],
            "Bearer error=\"insufficient_scope\", error_description=\"missing scope(s): \
             gateway:connections\", scope=\"gateway:connections\"",
            "{method} {path}"
        );
    }
    let owner = bearer("owner", "acme");
    let listed = call(Method::GET, &api(&gateway, ""), &owner, None).await;
    let connections = listed.json()["connections"].as_array().unwrap().clone();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0]["id"], id.as_str());
    assert_eq!(counts.calls.load(Ordering::SeqCst), 0);
    // The scope alone opens the API.
    let scoped = bearer_scoped("scoped", "gateway:connections");
    let listed = call(Method::GET, &api(&gateway, ""), &scoped, None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    gateway.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn the_gateway_scope_is_a_setting_and_api_keys_hold_it() {
    const KEY: &str = "gateway-api-key-of-sufficient-length";
    let gateway = start(&[
        ("MCP_GATEWAY_SCOPE", "gw:manage"),
        ("MCP_AUTH_MODE", "both"),
        ("MCP_API_KEYS", KEY),
    ])
    .await;
    let default_scope = bearer_scoped("a", "gateway:connections");
    let refused = call(Method::GET, &api(&gateway, ""), &default_scope, None).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "insufficient_scope");
    let named = bearer_scoped("b", "gw:manage");
    let listed = call(Method::GET, &api(&gateway, ""), &named, None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    // A key of MCP_API_KEYS holds every scope: it passes the scope check
    // (and then needs a namespace, which such keys do not carry).
    let with_key = send(
        Method::GET,
        &api(&gateway, ""),
        &[("x-api-key", KEY)],
        String::new(),
    )
    .await;
    assert_ne!(
        with_key.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        with_key.text()
    );
    assert_ne!(
        with_key.json()["code"],
        "insufficient_scope",
        "{}",
        with_key.text()
    );
    gateway.stop().await;
}

#[tokio::test]
async fn attack_a_rule_on_any_servers_tool_holds_for_a_renamed_connection() {
    let mut vars = TOOL_QUOTAS.to_vec();
    vars.push(("MCP_TOOL_SCOPES", r#"{"*.add": ["math"]}"#));
    vars.push(("MCP_TOOL_RATE_LIMITS", r#"{"*.echo": 2}"#));
    let (gateway, upstream, counts, first) = gateway_with(&vars, "renamed").await;
    let caller = bearer_scoped("caller", "gateway:connections");
    // Scopes: whatever the connection is called.
    let refused = execute(&gateway, &caller, &first, "add", json!({"a": 1, "b": 2})).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "insufficient_scope");
    let session = mcp_headers(&gateway, &caller).await;
    let over_mcp = mcp_call(&gateway, &caller, &session, "renamed.add").await;
    assert_problem(&over_mcp, StatusCode::FORBIDDEN, "insufficient_scope");
    let mut socket = ws_session(&gateway, &caller).await;
    let over_ws = ws_call(&mut socket, 1, "renamed.add").await;
    assert!(
        over_ws["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("insufficient_scope")),
        "{over_ws}"
    );
    assert!(
        !rest_tool_names(&gateway, &caller, &first)
            .await
            .contains(&"add".to_owned())
    );
    assert!(
        !mcp_tool_names(&gateway, &caller, &session)
            .await
            .contains(&"renamed.add".to_owned())
    );
    assert_eq!(counts.calls.load(Ordering::SeqCst), 0);

    // Quotas: spent under one name, still spent under the next.
    for _ in 0..2 {
        let reply = mcp_call(&gateway, &caller, &session, "renamed.echo").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let owner = bearer("owner", "acme");
    let deleted = call(
        Method::DELETE,
        &api(&gateway, &format!("/{first}")),
        &owner,
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let again = register(&gateway, &owner, "fresh", &upstream).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.text());
    let second = again.json()["id"].as_str().unwrap().to_owned();
    let over = execute(&gateway, &caller, &second, "echo", json!({"text": "x"})).await;
    assert_problem(&over, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let over_mcp = mcp_call(&gateway, &caller, &session, "fresh.echo").await;
    assert_problem(&over_mcp, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let over_ws = ws_call(&mut socket, 2, "fresh.echo").await;
    assert_eq!(over_ws["error"]["code"], -32029, "{over_ws}");
    assert_eq!(counts.calls.load(Ordering::SeqCst), 2);
    gateway.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn attack_the_same_upstream_under_another_name_is_refused() {
    let (gateway, upstream, _, _) = gateway_with(&[], "up").await;
    let owner = bearer("owner", "acme");
    let port = upstream.addr.port();
    for url in [
        upstream.url(),
        format!("http://127.1:{port}/mcp"),
        format!("HTTP://127.0.0.1:{port}/mcp#again"),
    ] {
        let reply = register_url(&gateway, &owner, "other", &url).await;
        assert_problem(&reply, StatusCode::CONFLICT, "duplicate_upstream");
    }
    let listed = call(Method::GET, &api(&gateway, ""), &owner, None).await;
    assert_eq!(listed.json()["connections"].as_array().unwrap().len(), 1);
    // Another namespace may reach it.
    let bob = bearer("bob", "globex");
    let theirs = register(&gateway, &bob, "other", &upstream).await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.text());
    gateway.stop().await;
    upstream.stop().await;
}
