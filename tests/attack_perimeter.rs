//! The perimeter under attack: the classic tricks against client-address
//! resolution, IP lists, the client-certificate header, body caps, the
//! tool policy's view of a JSON-RPC body, session binding and Host/Origin
//! checks, sent to the reference server (production settings) on
//! 127.0.0.1, plus a few library-level cases where a TCP peer cannot be
//! faked. Every case asserts the refusal (status and problem `code`) and
//! that nothing reached what the rule protects: no JSON-RPC result came
//! back, the tool's marker text never appears, or a counting inner service
//! was never called.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use app::settings::Settings;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use mcp_support::{Reply, Server, open_session, post, send};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt};
use tower_warden::body_limit::BodyLimitLayer;
use tower_warden::client_ip::ClientIpLayer;
use tower_warden::ip_filter::{IpFilterLayer, IpSet};

const SECRET: &str = "attack-perimeter-secret-of-at-least-32-bytes";
const AUDIENCE: &str = "https://mcp.attack.test/mcp";
const VERSION: &str = "2025-06-18";
/// The text the `echo` tool would send back: seeing it means the tool ran.
const MARKER: &str = "perimeter-breached-7f3a";

/// The reference server in production with `vars` on top: HS256 tokens
/// for [`AUDIENCE`], an in-memory connection store, no rate limit (so the
/// refusals under test are the only ones).
async fn start(vars: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("MCP_ENVIRONMENT", "production"),
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_JWT_AUDIENCE", AUDIENCE),
        ("MCP_RESOURCE_URL", AUDIENCE),
        ("MCP_JWT_ISSUER", "https://issuer.attack.test"),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ];
    all.extend_from_slice(vars);
    let config = Settings::from_vars(all).unwrap();
    let shutdown = CancellationToken::new();
    let router = app::router(&config, &shutdown).await.unwrap();
    Server::serve(router, shutdown).await
}

/// A bearer token for `subject` with `scope`.
fn bearer(subject: &str, scope: &str) -> String {
    let token = mcp_support::sign_hs256(
        SECRET,
        json!({
            "sub": subject, "scope": scope, "aud": AUDIENCE,
            "iss": "https://issuer.attack.test",
        }),
    );
    format!("Bearer {token}")
}

/// `initialize` with `headers` (plus a valid token unless they carry one).
async fn initialize(server: &Server, headers: &[(&str, &str)]) -> Reply {
    let auth = bearer("alice", "*");
    let mut all = headers.to_vec();
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
    {
        all.push(("authorization", &auth));
    }
    post(&server.url(), &all, &mcp_support::initialize(VERSION)).await
}

/// Asserts a problem-JSON refusal with `status` and `code` that carries no
/// JSON-RPC result and no trace of [`MARKER`].
#[track_caller]
fn assert_refused(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(
        reply.headers[http::header::CONTENT_TYPE],
        "application/problem+json",
        "{}",
        reply.text()
    );
    let body = reply.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(body.get("result").is_none(), "{body}");
    assert!(!reply.text().contains(MARKER), "{body}");
}

/// [`initialize`] once with each of `values` as the `name` header, each
/// refused with `status` and `code`.
async fn assert_each_refused(
    server: &Server,
    name: &str,
    values: &[&str],
    status: StatusCode,
    code: &str,
) {
    for value in values {
        let reply = initialize(server, &[(name, value)]).await;
        assert_eq!(reply.status, status, "{name}: {value}");
        assert_refused(&reply, status, code);
    }
}

/// Asserts that the request got through: a JSON-RPC result (the control
/// case of each group, so that a refusal means the rule and not the setup).
#[track_caller]
fn assert_admitted(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.message().get("result").is_some(), "{}", reply.text());
}

/// Sends `bytes` on a fresh connection to `addr` and reads until the
/// server closes it (at most 10 s); the raw answer as text.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in a raw answer.
fn first_status(raw: &str) -> u16 {
    raw.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"))
}

/// A service that counts its calls and the body bytes it read.
#[derive(Clone, Default)]
struct Counting {
    calls: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

impl Counting {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn handle<B>(self, request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
    where
        B: http_body::Body,
    {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut body = std::pin::pin!(request.into_body());
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(data) = frame.data_ref() {
                use bytes::Buf;
                self.bytes.fetch_add(data.remaining(), Ordering::SeqCst);
            }
        }
        Ok(Response::new(Full::new(Bytes::from_static(b"inner"))))
    }
}

/// A request from `peer` with `headers`.
fn from_peer(peer: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().uri("/mcp");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Full::new(Bytes::new())).unwrap();
    request
        .extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    request
}

/// The problem `code` of a library-level refusal.
async fn problem_code<B: http_body::Body>(response: Response<B>) -> (StatusCode, String)
where
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let value: Value = serde_json::from_slice(&body).unwrap();
    (
        status,
        value["code"].as_str().unwrap_or_default().to_owned(),
    )
}

// ---------------------------------------------------------------------------
// Spoofed `X-Forwarded-For` and `Forwarded`: from a peer that is not a
// trusted proxy they are ignored, so a blocked peer stays blocked and an
// allow list cannot be entered by naming an allowed address; from a
// trusted proxy only the rightmost untrusted hop counts.

/// 127.0.0.1 is blocked and is not a trusted proxy.
const BLOCKED_UNTRUSTED: &[(&str, &str)] = &[
    ("MCP_BLOCKED_IPS", "127.0.0.1"),
    ("MCP_TRUST_X_FORWARDED", "true"),
    ("MCP_TRUSTED_PROXIES", "192.0.2.1"),
];

#[tokio::test]
async fn spoofed_xff_from_an_untrusted_peer_is_ignored() {
    let server = start(BLOCKED_UNTRUSTED).await;
    for xff in ["198.51.100.7", "198.51.100.7, 192.0.2.1", "::1"] {
        let reply = initialize(&server, &[("x-forwarded-for", xff)]).await;
        assert_refused(&reply, StatusCode::FORBIDDEN, "ip_denied");
    }
    server.stop().await;
}

#[tokio::test]
async fn spoofed_forwarded_from_an_untrusted_peer_is_ignored() {
    let server = start(BLOCKED_UNTRUSTED).await;
    assert_each_refused(
        &server,
        "forwarded",
        &[
            "for=198.51.100.7",
            "for=\"[2001:db8::1]:80\"",
            "for=192.0.2.1;proto=https",
        ],
        StatusCode::FORBIDDEN,
        "ip_denied",
    )
    .await;
    server.stop().await;
}

/// 127.0.0.1 is the trusted proxy; 203.0.113.0/24 is blocked.
const BEHIND_PROXY_DENY: &[(&str, &str)] = &[
    ("MCP_BLOCKED_IPS", "203.0.113.0/24"),
    ("MCP_TRUST_X_FORWARDED", "true"),
    ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
];

#[tokio::test]
async fn spoofed_leftmost_xff_is_ignored() {
    let server = start(BEHIND_PROXY_DENY).await;
    // Control: a client the proxy names, not blocked.
    assert_admitted(&initialize(&server, &[("x-forwarded-for", "198.51.100.7")]).await);
    // The blocked client prepends an innocent address: the proxy's own
    // (rightmost) entry decides.
    let reply = initialize(&server, &[("x-forwarded-for", "198.51.100.7, 203.0.113.9")]).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "ip_denied");
    server.stop().await;
}

#[tokio::test]
async fn spoofed_xff_in_a_separate_header_line_is_ignored() {
    let server = start(BEHIND_PROXY_DENY).await;
    let reply = initialize(
        &server,
        &[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "ip_denied");
    server.stop().await;
}

#[tokio::test]
async fn garbage_xff_entries_fail_closed() {
    let server = start(BEHIND_PROXY_DENY).await;
    assert_each_refused(
        &server,
        "x-forwarded-for",
        &[
            "unknown",
            "203.0.113.9 garbage",
            "203.0.113.9;",
            "",
            ",",
            "1.2.3.4.5",
            "[203.0.113.9]",
            "[::1",
            "::1]:80",
        ],
        StatusCode::BAD_REQUEST,
        "forwarded_invalid",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn obfuscated_ipv4_forms_in_xff_are_refused() {
    let server = start(BEHIND_PROXY_DENY).await;
    // Forms a URL parser would read as 203.0.113.9: never as an address.
    assert_each_refused(
        &server,
        "x-forwarded-for",
        &[
            "203.113.9",
            "3405803785",
            "0xcb007109",
            "0313.0.0161.011",
            "203.0.113.9.",
            "127.1",
        ],
        StatusCode::BAD_REQUEST,
        "forwarded_invalid",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn bracketed_ipv6_with_port_in_xff_is_matched() {
    let server = start(BEHIND_PROXY_DENY).await;
    assert_each_refused(
        &server,
        "x-forwarded-for",
        &[
            "[::ffff:203.0.113.9]:443",
            "[::ffff:cb00:7109]",
            "203.0.113.9:65535",
        ],
        StatusCode::FORBIDDEN,
        "ip_denied",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn ipv4_mapped_ipv6_in_xff_hits_an_ipv4_deny_list() {
    let server = start(BEHIND_PROXY_DENY).await;
    assert_each_refused(
        &server,
        "x-forwarded-for",
        &[
            "::ffff:203.0.113.9",
            "::FFFF:203.0.113.200",
            "0:0:0:0:0:ffff:cb00:7101",
        ],
        StatusCode::FORBIDDEN,
        "ip_denied",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn ipv4_compatible_ipv6_in_xff_hits_an_ipv4_deny_list() {
    let server = start(BEHIND_PROXY_DENY).await;
    // The deprecated IPv4-compatible form (`::a.b.c.d`) of a blocked
    // address must not slip past an IPv4 list.
    let reply = initialize(&server, &[("x-forwarded-for", "::203.0.113.9")]).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "ip_denied");
    server.stop().await;
}

#[tokio::test]
async fn forwarded_header_is_not_believed_when_the_proxy_writes_xff() {
    let server = start(BEHIND_PROXY_DENY).await;
    // The server reads X-Forwarded-For only: a `Forwarded` naming an
    // innocent address does not replace the proxy's XFF entry.
    let reply = initialize(
        &server,
        &[
            ("forwarded", "for=198.51.100.7"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "ip_denied");
    server.stop().await;
}

/// Only 198.51.100.0/24 may connect.
const ALLOW_LIST: &[(&str, &str)] = &[("MCP_ALLOWED_IPS", "198.51.100.0/24")];

#[tokio::test]
async fn an_allow_list_cannot_be_entered_by_spoofing_xff() {
    let server = start(ALLOW_LIST).await;
    for (name, value) in [
        ("x-forwarded-for", "198.51.100.7"),
        ("x-forwarded-for", "::ffff:198.51.100.7"),
        ("forwarded", "for=198.51.100.7"),
        ("x-real-ip", "198.51.100.7"),
    ] {
        let reply = initialize(&server, &[(name, value)]).await;
        assert_refused(&reply, StatusCode::FORBIDDEN, "ip_denied");
    }
    server.stop().await;
}

#[tokio::test]
async fn an_allow_list_behind_a_proxy_takes_the_rightmost_hop() {
    let mut vars = ALLOW_LIST.to_vec();
    vars.extend_from_slice(&[
        ("MCP_TRUST_X_FORWARDED", "true"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let server = start(&vars).await;
    assert_admitted(&initialize(&server, &[("x-forwarded-for", "198.51.100.7")]).await);
    let reply = initialize(&server, &[("x-forwarded-for", "198.51.100.7, 203.0.113.9")]).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "ip_denied");
    server.stop().await;
}

#[tokio::test]
async fn an_ipv4_mapped_allow_list_entry_does_not_open_everything() {
    // `::ffff:198.51.100.0/120` is 198.51.100.0/24: the loopback peer is
    // still outside it.
    let server = start(&[("MCP_ALLOWED_IPS", "::ffff:198.51.100.0/120")]).await;
    let reply = initialize(&server, &[]).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "ip_denied");
    server.stop().await;
}

/// `ClientIpLayer` (RFC 7239 mode) then `IpFilterLayer` in front of a
/// counting service: the peer address is what a server would put in the
/// extensions, so the forwarding proxy can be any address.
fn forwarded_stack(
    deny: &[&str],
    allow: &[&str],
    counting: &Counting,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<impl http_body::Body<Error = impl std::fmt::Debug>>,
    Error = Infallible,
> + Clone {
    let counting = counting.clone();
    ServiceBuilder::new()
        .layer(
            ClientIpLayer::new()
                .try_trusted_proxies(["10.0.0.1"])
                .unwrap()
                .forwarded(),
        )
        .layer(IpFilterLayer::new(
            IpSet::from_lists(allow.iter().copied(), deny.iter().copied()).unwrap(),
        ))
        .service_fn(move |r| counting.clone().handle(r))
}

#[tokio::test]
async fn rfc7239_forwarded_variants_from_a_trusted_proxy() {
    let counting = Counting::default();
    let service = forwarded_stack(&["203.0.113.0/24"], &[], &counting);
    // Quoted, bracketed, with a port, mapped, mixed case, other params:
    // all name the blocked client.
    for forwarded in [
        "for=203.0.113.9",
        "for=\"203.0.113.9\"",
        "For=203.0.113.9;proto=https",
        "for=\"[::ffff:203.0.113.9]:80\"",
        "for=198.51.100.7, for=203.0.113.9",
        "by=10.0.0.1;for=203.0.113.9;host=mcp.example",
    ] {
        let response = service
            .clone()
            .oneshot(from_peer("10.0.0.1:5000", &[("forwarded", forwarded)]))
            .await
            .unwrap();
        assert_eq!(
            problem_code(response).await,
            (StatusCode::FORBIDDEN, "ip_denied".to_owned()),
            "{forwarded}"
        );
    }
    // Unusable or obfuscated identifiers fail closed.
    for forwarded in [
        "for=unknown",
        "for=_hidden",
        "for=127.1",
        "for=\"[::1]:80",
        "for=203.0.113.9;for=198.51.100.7",
        "for=",
        "proto=https",
    ] {
        let response = service
            .clone()
            .oneshot(from_peer("10.0.0.1:5000", &[("forwarded", forwarded)]))
            .await
            .unwrap();
        assert_eq!(
            problem_code(response).await,
            (StatusCode::BAD_REQUEST, "forwarded_invalid".to_owned()),
            "{forwarded}"
        );
    }
    assert_eq!(counting.calls(), 0);
    // Control: the proxy names an innocent client.
    let response = service
        .oneshot(from_peer(
            "10.0.0.1:5000",
            &[("forwarded", "for=\"[::1]:80\"")],
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(counting.calls(), 1);
}

#[tokio::test]
async fn rfc7239_forwarded_from_an_untrusted_peer_is_ignored() {
    let counting = Counting::default();
    let service = forwarded_stack(&["203.0.113.0/24"], &["198.51.100.0/24"], &counting);
    for forwarded in [
        "for=198.51.100.7",
        "for=unknown",
        "for=\"[::ffff:198.51.100.7]\"",
    ] {
        let response = service
            .clone()
            .oneshot(from_peer(
                "203.0.113.9:5000",
                &[
                    ("forwarded", forwarded),
                    ("x-forwarded-for", "198.51.100.7"),
                ],
            ))
            .await
            .unwrap();
        assert_eq!(
            problem_code(response).await,
            (StatusCode::FORBIDDEN, "ip_denied".to_owned())
        );
    }
    assert_eq!(counting.calls(), 0);
}

#[tokio::test]
async fn rfc7239_quoted_values_cannot_smuggle_a_for_past_a_deny_list() {
    // The proxy names the blocked client and copies the client's `Host`
    // into a quoted `host` (RFC 3986 allows `,`, `;` and `=` in a host
    // name). Commas, semicolons and escaped quotes inside a quoted string
    // are part of the value: the element names the blocked client only.
    let counting = Counting::default();
    let service = forwarded_stack(&["203.0.113.0/24"], &[], &counting);
    for forwarded in [
        r#"for=203.0.113.9;host="x,for=198.51.100.7;y=""#,
        r#"for=203.0.113.9;host="x\",for=198.51.100.7;y=\"""#,
        r#"host="x;for=198.51.100.7";for=203.0.113.9"#,
        r#"for=198.51.100.7;x=", for=203.0.113.9"#,
    ] {
        let response = service
            .clone()
            .oneshot(from_peer("10.0.0.1:5000", &[("forwarded", forwarded)]))
            .await
            .unwrap();
        assert_eq!(
            problem_code(response).await,
            (StatusCode::FORBIDDEN, "ip_denied".to_owned()),
            "{forwarded}"
        );
    }
    // A stray quote in the proxy's element is no boundary: refused.
    let response = service
        .clone()
        .oneshot(from_peer(
            "10.0.0.1:5000",
            &[("forwarded", r#"for=198.51.100.7, for=203.0.113.9;x=a"b"#)],
        ))
        .await
        .unwrap();
    assert_eq!(
        problem_code(response).await,
        (StatusCode::BAD_REQUEST, "forwarded_invalid".to_owned())
    );
    assert_eq!(counting.calls(), 0);
}

// ---------------------------------------------------------------------------
// IPv4-mapped (`::ffff:a.b.c.d`) and IPv4-compatible (`::a.b.c.d`) peer
// addresses against IPv4 lists: a dual-stack listener reports IPv4
// clients in the mapped form.

#[tokio::test]
async fn ipv4_mapped_peer_hits_an_ipv4_deny_list() {
    let counting = Counting::default();
    let set = IpSet::from_lists(Vec::<&str>::new(), ["203.0.113.0/24"]).unwrap();
    let service = ServiceBuilder::new()
        .layer(IpFilterLayer::new(set))
        .service_fn({
            let counting = counting.clone();
            move |r| counting.clone().handle(r)
        });
    for peer in ["[::ffff:203.0.113.9]:4000", "[::ffff:cb00:71ff]:4000"] {
        let response = service.clone().oneshot(from_peer(peer, &[])).await.unwrap();
        assert_eq!(
            problem_code(response).await,
            (StatusCode::FORBIDDEN, "ip_denied".to_owned()),
            "{peer}"
        );
    }
    assert_eq!(counting.calls(), 0);
}

#[tokio::test]
async fn ipv4_mapped_peer_cannot_escape_an_ipv4_allow_list() {
    let counting = Counting::default();
    let set = IpSet::from_lists(["198.51.100.0/24"], Vec::<&str>::new()).unwrap();
    let service = ServiceBuilder::new()
        .layer(IpFilterLayer::new(set))
        .service_fn({
            let counting = counting.clone();
            move |r| counting.clone().handle(r)
        });
    for peer in [
        "[::ffff:203.0.113.9]:4000",
        "[::203.0.113.9]:4000",
        "[64:ff9b::198.51.100.7]:4000",
    ] {
        let response = service.clone().oneshot(from_peer(peer, &[])).await.unwrap();
        assert_eq!(
            problem_code(response).await,
            (StatusCode::FORBIDDEN, "ip_denied".to_owned()),
            "{peer}"
        );
    }
    assert_eq!(counting.calls(), 0);
    // Control: the mapped form of an allowed address is allowed.
    let response = service
        .oneshot(from_peer("[::ffff:198.51.100.7]:4000", &[]))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn ipv4_compatible_peer_hits_an_ipv4_deny_list() {
    let counting = Counting::default();
    let set = IpSet::from_lists(Vec::<&str>::new(), ["203.0.113.0/24"]).unwrap();
    let service = ServiceBuilder::new()
        .layer(IpFilterLayer::new(set))
        .service_fn({
            let counting = counting.clone();
            move |r| counting.clone().handle(r)
        });
    let response = service
        .oneshot(from_peer("[::203.0.113.9]:4000", &[]))
        .await
        .unwrap();
    assert_eq!(
        problem_code(response).await,
        (StatusCode::FORBIDDEN, "ip_denied".to_owned())
    );
    assert_eq!(counting.calls(), 0);
}

// ---------------------------------------------------------------------------
// The client-certificate header is believed only from a trusted proxy,
// only once, and only with the exact value.

#[tokio::test]
async fn client_cert_header_from_an_untrusted_peer_is_refused() {
    let server = start(&[
        ("MCP_CLIENT_CERT_REQUIRED", "true"),
        ("MCP_TRUSTED_PROXIES", "192.0.2.1"),
    ])
    .await;
    for (name, value) in [
        ("x-ssl-client-verify", "SUCCESS"),
        ("X-SSL-CLIENT-VERIFY", "SUCCESS"),
        ("x-ssl-client-verify", " SUCCESS "),
    ] {
        let reply = initialize(&server, &[(name, value)]).await;
        assert_refused(&reply, StatusCode::FORBIDDEN, "client_cert_required");
    }
    server.stop().await;
}

#[tokio::test]
async fn custom_client_cert_header_from_an_untrusted_peer_is_refused() {
    let server = start(&[
        ("MCP_CLIENT_CERT_REQUIRED", "true"),
        ("MCP_CLIENT_CERT_HEADER", "X-Client-Verified"),
        ("MCP_CLIENT_CERT_HEADER_VALUE", "yes"),
        ("MCP_TRUSTED_PROXIES", "192.0.2.1"),
    ])
    .await;
    for (name, value) in [
        ("x-client-verified", "yes"),
        ("x-ssl-client-verify", "SUCCESS"),
    ] {
        let reply = initialize(&server, &[(name, value)]).await;
        assert_refused(&reply, StatusCode::FORBIDDEN, "client_cert_required");
    }
    server.stop().await;
}

#[tokio::test]
async fn client_cert_header_value_variants_from_the_proxy_are_refused() {
    let server = start(&[
        ("MCP_CLIENT_CERT_REQUIRED", "true"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    // Control: the proxy's exact assertion.
    assert_admitted(&initialize(&server, &[("x-ssl-client-verify", "SUCCESS")]).await);
    assert_each_refused(
        &server,
        "x-ssl-client-verify",
        &[
            "success",
            "SUCCESS,SUCCESS",
            "SUCCESSFUL",
            "NONE",
            "FAILED:unable to verify",
            "SUCC\tESS",
        ],
        StatusCode::FORBIDDEN,
        "client_cert_required",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn duplicate_client_cert_headers_are_refused() {
    let server = start(&[
        ("MCP_CLIENT_CERT_REQUIRED", "true"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    for (first, second) in [
        ("NONE", "SUCCESS"),
        ("SUCCESS", "SUCCESS"),
        ("SUCCESS", "NONE"),
    ] {
        let reply = initialize(
            &server,
            &[
                ("x-ssl-client-verify", first),
                ("x-ssl-client-verify", second),
            ],
        )
        .await;
        assert_refused(&reply, StatusCode::FORBIDDEN, "client_cert_required");
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Body caps: a declared length over the cap is refused before any auth
// work; a streamed body is cut at the cap; the smuggling shapes of
// HTTP/1.1 framing do not get a body past it.

const CAP: &[(&str, &str)] = &[("MCP_HTTP_MAX_BODY_BYTES", "1024")];

/// An `initialize` padded to `size` bytes with whitespace.
fn padded_initialize(size: usize) -> String {
    let body = mcp_support::initialize(VERSION);
    format!("{body}{}", " ".repeat(size.saturating_sub(body.len())))
}

#[tokio::test]
async fn content_length_over_the_cap_is_refused_before_auth() {
    let server = start(CAP).await;
    // No credentials at all: the size is checked first (413, not 401).
    let reply = send(
        Method::POST,
        &server.url(),
        &[
            ("content-type", "application/json"),
            ("accept", mcp_support::ACCEPT_BOTH),
        ],
        padded_initialize(4096),
    )
    .await;
    assert_refused(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    server.stop().await;
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_without_the_body() {
    let server = start(CAP).await;
    // The headers promise 10 MB and no byte follows: the answer must not
    // wait for the body.
    let head = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: {}\r\ncontent-length: 10000000\r\n\r\n",
        mcp_support::ACCEPT_BOTH
    );
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut out))
        .await
        .expect("answered before the body")
        .unwrap();
    let text = String::from_utf8_lossy(&out[..n]);
    assert_eq!(first_status(&text), 413, "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn chunked_body_over_the_cap_is_refused() {
    let server = start(CAP).await;
    let auth = bearer("alice", "*");
    // A streamed body with no Content-Length: chunks of 512 bytes.
    let body = padded_initialize(8192);
    let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> = body
        .as_bytes()
        .chunks(512)
        .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let request = Request::builder()
        .method(Method::POST)
        .uri(server.url())
        .header("content-type", "application/json")
        .header("accept", mcp_support::ACCEPT_BOTH)
        .header("authorization", &auth)
        .body(StreamBody::new(futures::stream::iter(chunks)))
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let reply = Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    };
    assert_refused(&reply, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    server.stop().await;
}

#[tokio::test]
async fn chunked_body_reaches_the_inner_service_only_up_to_the_cap() {
    let counting = Counting::default();
    let service = ServiceBuilder::new()
        .layer(BodyLimitLayer::new(1024))
        .service_fn({
            let counting = counting.clone();
            move |r| counting.clone().handle(r)
        });
    let chunks: Vec<Result<http_body::Frame<Bytes>, Infallible>> = (0..64)
        .map(|_| Ok(http_body::Frame::data(Bytes::from(vec![b'x'; 100]))))
        .collect();
    let request = Request::builder()
        .method(Method::POST)
        .uri("/mcp")
        .body(StreamBody::new(futures::stream::iter(chunks)))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(
        problem_code(response).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large".to_owned()
        )
    );
    assert!(counting.bytes.load(Ordering::SeqCst) <= 1024);
}

#[tokio::test]
async fn content_length_and_chunked_together_do_not_pass_the_cap() {
    let server = start(CAP).await;
    let auth = bearer("alice", "*");
    // The smuggling shape: a small Content-Length beside a chunked body
    // over the cap. Either the framing is refused, or chunked wins and the
    // cap applies; never a result.
    let body = padded_initialize(4000);
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: {}\r\nauthorization: {auth}\r\ncontent-length: 10\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        mcp_support::ACCEPT_BOTH,
        body.len()
    );
    let answer = raw(server.addr, request.as_bytes()).await;
    let status = first_status(&answer);
    assert!(status == 400 || status == 413, "{answer}");
    assert!(!answer.contains("\"result\""), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_lying_short_content_length_does_not_smuggle_a_request() {
    let server = start(CAP).await;
    // The declared 20 bytes are a broken JSON body; what follows looks
    // like a second request without credentials. It is answered as its
    // own request (401), never run with the first one's credentials.
    let auth = bearer("alice", "*");
    let smuggled = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        mcp_support::ACCEPT_BOTH,
        mcp_support::initialize(VERSION).len(),
        mcp_support::initialize(VERSION),
    );
    let first_body = format!("{{\"jsonrpc\":\"2.0\",  {smuggled}");
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: {}\r\nauthorization: {auth}\r\ncontent-length: 20\r\n\r\n{first_body}",
        mcp_support::ACCEPT_BOTH,
    );
    let answer = raw(server.addr, request.as_bytes()).await;
    assert_ne!(first_status(&answer), 200, "{answer}");
    assert!(!answer.contains("\"result\""), "{answer}");
    assert!(answer.contains("unauthenticated"), "{answer}");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Tool-policy bypass: `echo` needs `tools:echo`, which the caller lacks;
// no way of writing the call gets it run.

const POLICY: &[(&str, &str)] = &[("MCP_TOOL_SCOPES", r#"{"echo": "tools:echo"}"#)];

/// A server with [`POLICY`], and a session of a caller with scope
/// `tools:add` only: (server, headers for the session).
async fn policy_session() -> (Server, Vec<(String, String)>) {
    let server = start(POLICY).await;
    let auth = bearer("mallory", "tools:add");
    let session = open_session(&server.url(), &[("authorization", &auth)], VERSION).await;
    let headers = vec![
        ("authorization".to_owned(), auth),
        ("mcp-session-id".to_owned(), session),
        ("mcp-protocol-version".to_owned(), VERSION.to_owned()),
    ];
    (server, headers)
}

/// Posts `body` (raw bytes) on the session.
async fn post_raw(server: &Server, headers: &[(String, String)], body: impl Into<Bytes>) -> Reply {
    let mut all: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("accept", mcp_support::ACCEPT_BOTH),
    ];
    all.extend(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    send(Method::POST, &server.url(), &all, body).await
}

/// A `tools/call` of `echo` with [`MARKER`].
fn echo_call(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "echo", "arguments": {"text": MARKER}}})
}

/// Asserts that the protected tool did not run: a refusal, a JSON-RPC
/// error or parse error, or the answer of some other method (`ping`), but
/// never a tool result and never the marker.
#[track_caller]
fn assert_not_run(reply: &Reply) {
    assert!(!reply.text().contains(MARKER), "{}", reply.text());
    if reply.status == StatusCode::OK {
        let message = reply.message();
        assert!(message["result"].get("content").is_none(), "{message}");
    }
}

#[tokio::test]
async fn a_direct_protected_call_is_refused() {
    let (server, headers) = policy_session().await;
    // Control: the allowed tool runs on the same session.
    let add = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                     "params": {"name": "add", "arguments": {"a": 1, "b": 2}}});
    assert_admitted(&post_raw(&server, &headers, add.to_string()).await);
    let reply = post_raw(&server, &headers, echo_call(2).to_string()).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
    server.stop().await;
}

#[tokio::test]
async fn a_batch_containing_a_protected_call_is_refused() {
    let (server, headers) = policy_session().await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        echo_call(2),
    ]);
    let reply = post_raw(&server, &headers, batch.to_string()).await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
    server.stop().await;
}

#[tokio::test]
async fn duplicate_name_keys_do_not_smuggle_a_protected_tool() {
    let (server, headers) = policy_session().await;
    for body in [
        format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"add","name":"echo","arguments":{{"text":"{MARKER}","a":1,"b":2}}}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"echo","name":"add","arguments":{{"text":"{MARKER}","a":1,"b":2}}}}}}"#
        ),
    ] {
        let reply = post_raw(&server, &headers, body).await;
        assert_not_run(&reply);
    }
    server.stop().await;
}

#[tokio::test]
async fn duplicate_method_keys_do_not_smuggle_a_protected_call() {
    let (server, headers) = policy_session().await;
    for body in [
        format!(
            r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","method":"ping","params":{{"name":"echo","arguments":{{"text":"{MARKER}"}}}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":4,"method":"ping","method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{MARKER}"}}}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{MARKER}"}}}},"params":{{"name":"add","arguments":{{"a":1,"b":2}}}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"add","arguments":{{"a":1,"b":2}}}},"params":{{"name":"echo","arguments":{{"text":"{MARKER}"}}}}}}"#
        ),
    ] {
        let reply = post_raw(&server, &headers, body).await;
        assert_not_run(&reply);
    }
    server.stop().await;
}

#[tokio::test]
async fn unicode_escapes_in_method_and_name_are_refused() {
    let (server, headers) = policy_session().await;
    for body in [
        format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools\u002fcall","params":{{"name":"echo","arguments":{{"text":"{MARKER}"}}}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"\u0065cho","arguments":{{"text":"{MARKER}"}}}}}}"#
        ),
        format!(
            r#"{{"jsonrpc":"2.0","id":5,"\u006dethod":"tools/call","params":{{"\u006eame":"echo","arguments":{{"text":"{MARKER}"}}}}}}"#
        ),
    ] {
        let reply = post_raw(&server, &headers, body).await;
        assert_refused(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
    }
    server.stop().await;
}

#[tokio::test]
async fn lookalike_tool_names_do_not_run_the_protected_tool() {
    let (server, headers) = policy_session().await;
    for name in [
        "ECHO",
        "echo ",
        " echo",
        "echo\u{0}",
        "ech\u{043e}",
        "echo\u{200b}",
    ] {
        let body = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
                          "params": {"name": name, "arguments": {"text": MARKER}}});
        let reply = post_raw(&server, &headers, body.to_string()).await;
        assert_not_run(&reply);
    }
    server.stop().await;
}

#[tokio::test]
async fn deep_nesting_is_a_clean_refusal_not_a_crash() {
    let (server, headers) = policy_session().await;
    let depth = 100_000;
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{MARKER}","x":{}{}}}}}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let reply = post_raw(&server, &headers, body).await;
    assert_not_run(&reply);
    assert!(reply.status.is_client_error() || reply.status == StatusCode::OK);
    // The server is still there.
    let add = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                     "params": {"name": "add", "arguments": {"a": 1, "b": 2}}});
    assert_admitted(&post_raw(&server, &headers, add.to_string()).await);
    server.stop().await;
}

#[tokio::test]
async fn method_in_odd_places_does_not_run_the_protected_tool() {
    let (server, headers) = policy_session().await;
    for body in [
        // The call wrapped in an object, in params, in an array of params.
        json!({"jsonrpc": "2.0", "id": 9, "method": "ping", "params": echo_call(10)}),
        json!({"jsonrpc": "2.0", "id": 9, "params": {"method": "tools/call", "name": "echo",
               "arguments": {"text": MARKER}}}),
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
               "params": ["echo", {"text": MARKER}]}),
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
               "params": {"name": ["echo"], "arguments": {"text": MARKER}}}),
        json!({"jsonrpc": "2.0", "id": 9, "method": ["tools/call"],
               "params": {"name": "echo", "arguments": {"text": MARKER}}}),
        json!([[echo_call(11)]]),
    ] {
        let reply = post_raw(&server, &headers, body.to_string()).await;
        assert_not_run(&reply);
    }
    server.stop().await;
}

#[tokio::test]
async fn bom_whitespace_and_non_utf8_do_not_run_the_protected_tool() {
    let (server, headers) = policy_session().await;
    let call = echo_call(12).to_string();
    let mut bodies: Vec<Vec<u8>> = vec![
        [b"\xef\xbb\xbf".as_slice(), call.as_bytes()].concat(),
        format!(" \r\n\t{call}\n\n ").into_bytes(),
        format!("{call}\u{a0}").into_bytes(),
    ];
    let mut invalid = call.clone().into_bytes();
    let at = call.find("echo").unwrap();
    invalid.splice(at..at, [0xff, 0xfe]);
    bodies.push(invalid);
    for body in bodies {
        let reply = post_raw(&server, &headers, body).await;
        assert_not_run(&reply);
        if reply.status == StatusCode::FORBIDDEN {
            assert_refused(&reply, StatusCode::FORBIDDEN, "insufficient_scope");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn huge_and_odd_ids_do_not_run_the_protected_tool() {
    let (server, headers) = policy_session().await;
    let long = "9".repeat(5000);
    for id in [long.as_str(), "1e400", "-0", "{}", "[1]", "true"] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{MARKER}"}}}}}}"#
        );
        let reply = post_raw(&server, &headers, body).await;
        assert_not_run(&reply);
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Session hijack: a session id is bound to the principal that opened it;
// guessed or malformed ids open nothing.

#[tokio::test]
async fn another_principal_cannot_use_a_session() {
    let server = start(&[]).await;
    let alice = bearer("alice", "*");
    let session = open_session(&server.url(), &[("authorization", &alice)], VERSION).await;
    let mallory = bearer("mallory", "*");
    let reply = post(
        &server.url(),
        &[
            ("authorization", &mallory),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", VERSION),
        ],
        &echo_call(1).to_string(),
    )
    .await;
    // Answered exactly like an unknown session: nothing says it exists.
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text());
    assert!(!reply.text().contains(MARKER));
    // Control: the owner still uses it.
    let reply = post(
        &server.url(),
        &[
            ("authorization", &alice),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", VERSION),
        ],
        &echo_call(2).to_string(),
    )
    .await;
    assert!(reply.text().contains(MARKER), "{}", reply.text());
    server.stop().await;
}

#[tokio::test]
async fn guessed_and_malformed_session_ids_open_nothing() {
    let server = start(&[]).await;
    let alice = bearer("alice", "*");
    let real = open_session(&server.url(), &[("authorization", &alice)], VERSION).await;
    let long = "a".repeat(8000);
    let mut guesses = vec![
        "00000000-0000-0000-0000-000000000000".to_owned(),
        "1".to_owned(),
        real.to_uppercase(),
        format!("{real},{real}"),
        format!("{real}x"),
        format!("../{real}"),
        long,
    ];
    guesses.retain(|g| *g != real);
    for guess in guesses {
        let reply = post(
            &server.url(),
            &[
                ("authorization", &alice),
                ("mcp-session-id", &guess),
                ("mcp-protocol-version", VERSION),
            ],
            &echo_call(3).to_string(),
        )
        .await;
        assert!(reply.status.is_client_error(), "{guess}: {}", reply.status);
        assert!(!reply.text().contains(MARKER));
    }
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Host and Origin: DNS-rebinding host names and foreign or malformed
// origins are refused before anything else reads the request.

#[tokio::test]
async fn dns_rebinding_hosts_are_refused() {
    let server = start(&[]).await;
    let port = server.addr.port();
    for host in [
        "evil.com".to_owned(),
        format!("evil.com:{port}"),
        format!("localhost.evil.com:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        "127.0.0.1.evil.com".to_owned(),
        "localhost..".to_owned(),
        "0x7f000001".to_owned(),
        "2130706433".to_owned(),
        "127.1".to_owned(),
        "[::ffff:127.0.0.1]".to_owned(),
    ] {
        let reply = initialize(&server, &[("host", &host)]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{host}");
        assert_refused(&reply, StatusCode::FORBIDDEN, "host_forbidden");
    }
    // Control: the same host written in other legitimate ways.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("LOCALHOST:{port}"),
        "localhost.".to_owned(),
    ] {
        assert_admitted(&initialize(&server, &[("host", &host)]).await);
    }
    server.stop().await;
}

#[tokio::test]
async fn an_absolute_form_target_cannot_override_the_host_check() {
    let server = start(&[]).await;
    let auth = bearer("alice", "*");
    let body = mcp_support::initialize(VERSION);
    // The target names a foreign host; the Host header names ours.
    let request = format!(
        "POST http://evil.com/mcp HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         content-type: application/json\r\naccept: {}\r\nauthorization: {auth}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        mcp_support::ACCEPT_BOTH,
        body.len()
    );
    let answer = raw(server.addr, request.as_bytes()).await;
    assert_eq!(first_status(&answer), 403, "{answer}");
    assert!(answer.contains("host_forbidden"), "{answer}");
    assert!(!answer.contains("\"result\""), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn foreign_and_malformed_origins_are_refused() {
    let server = start(&[]).await;
    let port = server.addr.port();
    let origins = [
        "null".to_owned(),
        "https://evil.com".to_owned(),
        format!("http://127.0.0.1:{port}/"),
        format!("http://127.0.0.1:{port}.evil.com"),
        format!("http://localhost.evil.com:{port}"),
        format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        format!("http://evil.com@127.0.0.1:{port}"),
        "file://".to_owned(),
        String::new(),
    ];
    for origin in &origins {
        let reply = initialize(&server, &[("origin", origin)]).await;
        assert_refused(&reply, StatusCode::FORBIDDEN, "origin_forbidden");
    }
    // Two Origin headers, one of them ours.
    let ours = format!("http://127.0.0.1:{port}");
    let reply = initialize(
        &server,
        &[("origin", &ours), ("origin", "https://evil.com")],
    )
    .await;
    assert_refused(&reply, StatusCode::FORBIDDEN, "origin_forbidden");
    // Control: our own origin.
    assert_admitted(&initialize(&server, &[("origin", &ours)]).await);
    server.stop().await;
}

#[tokio::test]
async fn origin_with_another_scheme_or_port_is_refused() {
    let server = start(&[("MCP_ALLOWED_ORIGINS", "https://app.example.com")]).await;
    for origin in [
        "http://app.example.com",
        "https://app.example.com:8443",
        "wss://app.example.com",
        "https://app.example.com.evil.com",
        "https://APP.example.com.",
    ] {
        let reply = initialize(&server, &[("origin", origin)]).await;
        if origin == "https://APP.example.com." {
            // Case and a trailing dot name the same site.
            assert_admitted(&reply);
        } else {
            assert_refused(&reply, StatusCode::FORBIDDEN, "origin_forbidden");
        }
    }
    assert_admitted(&initialize(&server, &[("origin", "https://app.example.com")]).await);
    server.stop().await;
}
