//! Signed webhooks on the reference server (`POST /webhooks`, over real
//! HTTP on 127.0.0.1): GitHub signatures by either of two secrets (a
//! rotation), Standard Webhooks deliveries valid, forged, replayed and late,
//! and settings that fail closed.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use app::settings::Settings;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::{Method, StatusCode};
use mcp_support::{Reply, Server, send};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "webhooks-test-secret-of-32-bytes-or-more";
const KEY: &[u8] = b"standard-webhooks-key-32-bytes!!";

fn settings(vars: &[(&str, &str)]) -> Result<Settings, tower_warden::ConfigError> {
    let mut all = vec![
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
    ];
    all.extend_from_slice(vars);
    Settings::from_vars(all)
}

async fn start(vars: &[(&str, &str)]) -> Server {
    let config = settings(vars).unwrap();
    let shutdown = CancellationToken::new();
    let router = app::router(&config, &shutdown).await.unwrap();
    Server::serve(router, shutdown).await
}

async fn hook(server: &Server, headers: &[(&str, &str)], body: &'static str) -> Reply {
    let url = format!("http://{}/webhooks", server.addr);
    send(Method::POST, &url, headers, body).await
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn github_signature(secret: &str, body: &str) -> String {
    let mac = hmac(secret.as_bytes(), &[body.as_bytes()]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn github_deliveries_signed_by_either_secret_pass_and_forged_ones_do_not() {
    let server = start(&[("MCP_WEBHOOK_SECRETS", "new-secret, old-secret")]).await;
    let body = r#"{"action":"opened"}"#;
    for secret in ["new-secret", "old-secret"] {
        let signature = github_signature(secret, body);
        let reply = hook(&server, &[("x-hub-signature-256", &signature)], body).await;
        assert_eq!(
            reply.status,
            StatusCode::NO_CONTENT,
            "{secret}: {:?}",
            reply.body
        );
    }
    let forged = github_signature("guessed", body);
    for headers in [vec![("x-hub-signature-256", forged.as_str())], vec![]] {
        let reply = hook(&server, &headers, body).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.json()["code"], "invalid_credentials");
    }
    // Signed for another body.
    let signature = github_signature("new-secret", body);
    let reply = hook(&server, &[("x-hub-signature-256", &signature)], "{}").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    server.stop().await;

    // Without secrets there is no webhook route at all.
    let server = start(&[]).await;
    let reply = hook(&server, &[("x-hub-signature-256", &signature)], body).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn standard_deliveries_are_refused_when_forged_replayed_or_late() {
    let secret = format!("whsec_{}", STANDARD.encode(KEY));
    let server = start(&[
        ("MCP_WEBHOOK_SECRETS", secret.as_str()),
        ("MCP_WEBHOOK_SCHEME", "standard"),
        ("MCP_WEBHOOK_TOLERANCE_SECONDS", "60"),
    ])
    .await;
    let body = r#"{"type":"invoice.paid"}"#;
    let sign = |key: &[u8], id: &str, at: u64| {
        let stamp = at.to_string();
        let mac = hmac(
            key,
            &[id.as_bytes(), b".", stamp.as_bytes(), b".", body.as_bytes()],
        );
        (stamp, format!("v1,{}", STANDARD.encode(mac)))
    };
    let deliver = |id: &'static str, stamp: String, signature: String| {
        let server = &server;
        async move {
            let headers = [
                ("webhook-id", id),
                ("webhook-timestamp", stamp.as_str()),
                ("webhook-signature", signature.as_str()),
            ];
            hook(server, &headers, body).await
        }
    };

    let (stamp, signature) = sign(KEY, "msg_1", now());
    let reply = deliver("msg_1", stamp.clone(), signature.clone()).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    // The same delivery again.
    let reply = deliver("msg_1", stamp, signature).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("already received")
    );
    // Late: correctly signed an hour ago.
    let (stamp, signature) = sign(KEY, "msg_2", now() - 3600);
    let reply = deliver("msg_2", stamp, signature).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("tolerance")
    );
    // Forged: another key.
    let (stamp, signature) = sign(b"another-key-of-thirty-two-bytes!", "msg_3", now());
    let reply = deliver("msg_3", stamp, signature).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[test]
fn webhook_settings_fail_closed_and_never_echo_a_secret() {
    for (vars, setting) in [
        (
            vec![("MCP_WEBHOOK_SCHEME", "standard")],
            "MCP_WEBHOOK_SCHEME",
        ),
        (
            vec![("MCP_WEBHOOK_TOLERANCE_SECONDS", "60")],
            "MCP_WEBHOOK_TOLERANCE_SECONDS",
        ),
        (
            vec![
                ("MCP_WEBHOOK_SECRETS", "s"),
                ("MCP_WEBHOOK_SCHEME", "gitlab"),
            ],
            "MCP_WEBHOOK_SCHEME",
        ),
        (
            vec![("MCP_WEBHOOK_SECRETS", "s"), ("MCP_WEBHOOK_SCHEME", "")],
            "MCP_WEBHOOK_SCHEME",
        ),
        (
            vec![
                ("MCP_WEBHOOK_SECRETS", "s"),
                ("MCP_WEBHOOK_TOLERANCE_SECONDS", "0"),
            ],
            "MCP_WEBHOOK_TOLERANCE_SECONDS",
        ),
        (vec![("MCP_WEBHOOK_SECRETS", "")], "MCP_WEBHOOK_SECRETS"),
        (
            vec![
                ("MCP_WEBHOOK_SECRETS", "whsec_not-base64-hunter2!"),
                ("MCP_WEBHOOK_SCHEME", "standard"),
            ],
            "MCP_WEBHOOK_SECRETS",
        ),
    ] {
        let error = settings(&vars).unwrap_err();
        assert_eq!(error.setting(), setting, "{vars:?}");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
    let ok = settings(&[("MCP_WEBHOOK_SECRETS", "hunter2-secret")]).unwrap();
    assert!(
        !format!("{ok:?}").contains("hunter2"),
        "Debug shows a secret"
    );
    assert!(!ok.redacted_json().to_string().contains("hunter2"));
    assert_eq!(ok.redacted_json()["webhook_scheme"], "github");
}
