//! Attacks on the settings, against the reference server on 127.0.0.1: a
//! typo that would leave the server in development, an allow list emptied
//! into "everyone", staging treated as development, and credentials in URL
//! settings leaking through `/status`, `Debug` or error messages.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/server.rs"]
mod app;

#[allow(dead_code)]
#[path = "support/mcp.rs"]
mod mcp_support;

use app::settings::Settings;
use bytes::Bytes;
use http::{Method, StatusCode};
use mcp_support::{Reply, Server, send};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "attack-config-test-secret-of-32-bytes-or-more";

fn base() -> Vec<(&'static str, &'static str)> {
    vec![
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_DATABASE_URL", "sqlite::memory:"),
        ("MCP_RATE_LIMIT_ENABLED", "false"),
    ]
}

fn load(vars: &[(&'static str, &'static str)]) -> Result<Settings, tower_warden::ConfigError> {
    let mut all = base();
    all.extend_from_slice(vars);
    Settings::from_vars(all)
}

async fn start(config: &Settings) -> Server {
    let shutdown = CancellationToken::new();
    let router = app::router(config, &shutdown).await.unwrap();
    Server::serve(router, shutdown).await
}

async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    let url = format!("http://{}{path}", server.addr);
    send(Method::GET, &url, headers, Bytes::new()).await
}

#[test]
fn a_misspelt_environment_stops_start_up() {
    // `MCP_ENV=production` used to be ignored, leaving development rules
    // (and so `MCP_AUTH_MODE=none`) in force.
    let error = load(&[("MCP_ENV", "production"), ("MCP_AUTH_MODE", "none")]).unwrap_err();
    assert_eq!(error.setting(), "MCP_ENV");
    assert!(
        error.to_string().contains("did you mean MCP_ENVIRONMENT?"),
        "{error}"
    );
}

#[test]
fn an_empty_metrics_allow_list_stops_start_up() {
    for empty in ["", ",", "[]", " [ ] "] {
        let error = load(&[("MCP_METRICS_ALLOWED_IPS", empty)]).unwrap_err();
        assert_eq!(error.setting(), "MCP_METRICS_ALLOWED_IPS", "{empty:?}");
    }
}

#[tokio::test]
async fn metrics_are_never_open_to_everyone() {
    // Unset: loopback only, so this test's client (127.0.0.1) may read.
    let config = load(&[]).unwrap();
    let server = start(&config).await;
    assert_eq!(get(&server, "/metrics", &[]).await.status, StatusCode::OK);
    server.stop().await;

    // A list that leaves the client out refuses it.
    let config = load(&[("MCP_METRICS_ALLOWED_IPS", "192.0.2.0/24")]).unwrap();
    let server = start(&config).await;
    let reply = get(&server, "/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "ip_denied");
    server.stop().await;

    // An empty list built by hand (the loader refuses one) admits no one.
    let mut config = load(&[]).unwrap();
    config.metrics.allowed_ips.clear();
    let server = start(&config).await;
    let reply = get(&server, "/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["code"], "ip_denied");
    assert!(!reply.text().contains("tower_warden_"), "metrics leaked");
    server.stop().await;
}

#[test]
fn every_allow_list_set_to_nothing_stops_start_up() {
    for name in [
        "MCP_ALLOWED_IPS",
        "MCP_BLOCKED_IPS",
        "MCP_TRUSTED_PROXIES",
        "MCP_METRICS_ALLOWED_IPS",
        "MCP_ALLOWED_HOSTS",
        "MCP_ALLOWED_ORIGINS",
        "MCP_CORS_ORIGINS",
        "MCP_JWT_ISSUER",
        "MCP_JWT_AUDIENCE",
        "MCP_OAUTH_AUTHORIZATION_SERVERS",
        "MCP_API_KEYS",
    ] {
        let error = load(&[(name, "[]")]).unwrap_err();
        assert_eq!(error.setting(), name);
    }
}

/// The server's own settings are read through the perimeter's source: the
/// same blank-is-unset and fail-closed rules, the same messages, and one
/// unknown-name check over both sets of names.
#[test]
fn the_servers_own_settings_follow_the_perimeters_rules() {
    use std::time::Duration;

    use tower_warden::config::WardenConfig;

    // Defaults, development.
    let dev = load(&[]).unwrap();
    assert_eq!(dev.gateway.scope, "gateway:connections");
    assert!(dev.gateway.allow_private_upstreams, "development default");
    assert_eq!(dev.gateway.max_connections, 32);
    assert_eq!(dev.gateway.fanout, 8);
    assert_eq!(dev.gateway.tools_cache_ttl, Duration::from_secs(60));
    assert_eq!(dev.gateway.credential_key, None);
    assert_eq!(
        Settings::from_vars([("MCP_JWT_SECRET", SECRET)])
            .unwrap()
            .gateway
            .database_url,
        app::settings::DEFAULT_DATABASE_URL
    );
    // Production rules reach them too.
    let production = load(&[("MCP_ENVIRONMENT", "production")]).unwrap();
    assert!(!production.gateway.allow_private_upstreams);
    // Values as given.
    let set = load(&[
        ("MCP_GATEWAY_SCOPE", "gw:manage"),
        ("MCP_GATEWAY_MAX_CONNECTIONS", "3"),
        ("MCP_GATEWAY_FANOUT", "2"),
        ("MCP_GATEWAY_TOOLS_CACHE_TTL", "0"),
        ("MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS", "off"),
        (
            "MCP_GATEWAY_CREDENTIAL_KEY",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ),
    ])
    .unwrap();
    assert_eq!(set.gateway.scope, "gw:manage");
    assert_eq!(set.gateway.max_connections, 3);
    assert_eq!(set.gateway.fanout, 2);
    assert_eq!(set.gateway.tools_cache_ttl, Duration::ZERO);
    assert!(!set.gateway.allow_private_upstreams);
    assert_eq!(set.gateway.credential_key.unwrap()[1], 0x11);
    // The tool screen quarantines unless told to only log.
    assert!(load(&[]).unwrap().gateway.quarantine);
    assert!(
        !load(&[("MCP_GATEWAY_TOOL_SCREEN", "log")])
            .unwrap()
            .gateway
            .quarantine
    );
    // Each refusal names its variable.
    for (name, bad) in [
        ("MCP_DATABASE_URL", "mysql://db/x"),
        ("MCP_DATABASE_URL", "./data/mcp.db"),
        ("MCP_GATEWAY_SCOPE", ""),
        ("MCP_GATEWAY_SCOPE", " "),
        ("MCP_GATEWAY_SCOPE", "two scopes"),
        ("MCP_GATEWAY_SCOPE", "quo\"te"),
        ("MCP_GATEWAY_MAX_CONNECTIONS", "0"),
        ("MCP_GATEWAY_FANOUT", "257"),
        ("MCP_GATEWAY_TOOLS_CACHE_TTL", "1s"),
        ("MCP_GATEWAY_ALLOW_PRIVATE_UPSTREAMS", "maybe"),
        ("MCP_GATEWAY_CREDENTIAL_KEY", "00112233"),
        ("MCP_GATEWAY_TOOL_SCREEN", "off"),
        ("MCP_GATEWAY_TOOL_SCREEN", "quarantine,log"),
        ("MCP_GATEWAY_TOOL_SCREEN_PHRASES", ","),
    ] {
        let error = load(&[(name, bad)]).unwrap_err();
        assert_eq!(error.setting(), name, "{name}={bad:?}: {error}");
        assert!(!error.message().contains("00112233"), "{error}");
    }
    // One unknown-name check over both sets: a typo of a server setting is
    // named with the closest one...
    let typo = load(&[("MCP_DATABASE_URI", "sqlite::memory:")]).unwrap_err();
    assert_eq!(typo.setting(), "MCP_DATABASE_URI");
    assert!(
        typo.message().contains("did you mean MCP_DATABASE_URL?"),
        "{typo}"
    );
    // ...and the perimeter alone does not read the server's settings.
    let alone = WardenConfig::from_vars([("MCP_DATABASE_URL", "sqlite::memory:")]).unwrap_err();
    assert_eq!(alone.setting(), "MCP_DATABASE_URL");
}

/// A settings file holds the server's settings beside the perimeter's; the
/// environment wins, and an error names the key it came from.
#[test]
fn the_settings_file_carries_the_servers_settings() {
    let dir = std::env::temp_dir().join(format!("tower-warden-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mcp.toml");
    std::fs::write(
        &file,
        "database_url = \"sqlite::memory:\"\n[gateway]\nscope = \"from:file\"\nfanout = 3\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let settings = Settings::from_vars([
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_CONFIG_FILE", path),
        ("MCP_GATEWAY_FANOUT", "5"),
    ])
    .unwrap();
    assert_eq!(settings.gateway.database_url, "sqlite::memory:");
    assert_eq!(settings.gateway.scope, "from:file");
    assert_eq!(settings.gateway.fanout, 5, "the environment wins");

    std::fs::write(&file, "[gateway]\nscope = \"two scopes\"\n").unwrap();
    let error =
        Settings::from_vars([("MCP_JWT_SECRET", SECRET), ("MCP_CONFIG_FILE", path)]).unwrap_err();
    assert_eq!(error.setting(), "MCP_GATEWAY_SCOPE");
    assert!(
        error.message().contains("(from gateway.scope in "),
        "{error}"
    );

    std::fs::write(&file, "[gateway]\nscopes = \"x\"\n").unwrap();
    let error =
        Settings::from_vars([("MCP_JWT_SECRET", SECRET), ("MCP_CONFIG_FILE", path)]).unwrap_err();
    assert!(
        error.message().contains("unknown setting gateway.scopes"),
        "{error}"
    );
    assert!(
        error.message().contains("did you mean gateway_scope?"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/status` and `Debug` show the server's settings beside the perimeter's,
/// with the database password and the credential key hidden.
#[tokio::test]
async fn the_servers_secrets_never_show() {
    let settings = load(&[
        (
            "MCP_DATABASE_URL",
            "postgres://app:db-s3cret@127.0.0.1/mcp?password=q-s3cret",
        ),
        (
            "MCP_GATEWAY_CREDENTIAL_KEY",
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ),
    ])
    .unwrap();
    let json = settings.redacted_json();
    assert_eq!(
        json["database_url"],
        "postgres://app:<redacted>@127.0.0.1/mcp?password=<redacted>"
    );
    assert_eq!(json["gateway_credential_key"], "<redacted>");
    assert_eq!(json["gateway_scope"], "gateway:connections");
    assert_eq!(json["jwt_secret"], "<redacted>");
    for text in [json.to_string(), format!("{settings:?}")] {
        for secret in ["db-s3cret", "q-s3cret", "00112233", SECRET] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

/// Logs, `/metrics`, WebSocket pings, the session store and the RFC 9728
/// metadata: the server's own settings, read and refused like the
/// perimeter's.
#[test]
fn the_servers_operations_settings_are_read_and_refused_by_name() {
    use std::net::IpAddr;
    use std::time::Duration;

    use app::settings::{LogFormat, SessionStorage};

    let set = load(&[
        ("MCP_LOG_LEVEL", "info,tower_warden=debug"),
        ("MCP_LOG_FORMAT", "JSON"),
        ("MCP_METRICS_ALLOWED_IPS", "10.0.0.0/8"),
        ("MCP_METRICS_PORT", "9100"),
        ("MCP_WS_PING_INTERVAL", "5"),
        ("MCP_WS_PING_TIMEOUT", "2"),
        ("MCP_OAUTH_AUTHORIZATION_SERVERS", "https://idp.example"),
    ])
    .unwrap();
    assert_eq!(set.logs.level.as_deref(), Some("info,tower_warden=debug"));
    assert_eq!(set.logs.format, LogFormat::Json);
    assert_eq!(
        set.metrics.allowed_ips,
        ["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(set.metrics.port, Some(9100));
    assert_eq!(set.websocket.ping_interval, Duration::from_secs(5));
    assert_eq!(set.websocket.ping_timeout, Duration::from_secs(2));
    assert_eq!(set.metadata.authorization_servers, ["https://idp.example"]);
    assert_eq!(set.sessions.store, SessionStorage::Memory);

    let defaults = load(&[]).unwrap();
    assert_eq!(defaults.logs.format, LogFormat::Text, "development");
    assert_eq!(defaults.websocket.ping_interval, Duration::from_secs(30));
    assert_eq!(defaults.websocket.ping_timeout, Duration::from_secs(10));
    let loopback = |ip: &str| {
        let ip: IpAddr = ip.parse().unwrap();
        defaults
            .metrics
            .allowed_ips
            .iter()
            .any(|net| net.contains(&ip))
    };
    assert!(loopback("127.0.0.1") && loopback("127.9.9.9") && loopback("::1"));
    assert!(!loopback("10.0.0.1") && !loopback("::2"));
    let production = load(&[("MCP_ENVIRONMENT", "production")]).unwrap();
    assert_eq!(
        production.logs.format,
        LogFormat::Json,
        "production logs JSON"
    );

    for (name, bad) in [
        ("MCP_LOG_FORMAT", "yaml"),
        ("MCP_LOG_LEVEL", "info; rm -rf /"),
        ("MCP_METRICS_ALLOWED_IPS", "10.0.0.0/33"),
        ("MCP_METRICS_PORT", "0"),
        ("MCP_METRICS_PORT", "70000"),
        ("MCP_AUDIT_LOG_FILE", "/"),
        ("MCP_WS_PING_INTERVAL", "0"),
        ("MCP_WS_PING_TIMEOUT", "3601"),
        ("MCP_SESSION_STORE", "postgres"),
        (
            "MCP_OAUTH_AUTHORIZATION_SERVERS",
            "ftp://user:s3cret-pw@idp.example/",
        ),
        ("MCP_OAUTH_AUTHORIZATION_SERVERS", "[]"),
    ] {
        let error = load(&[(name, bad)]).unwrap_err();
        assert_eq!(error.setting(), name, "{name}={bad:?}: {error}");
        assert!(!error.message().contains("s3cret-pw"), "{error}");
    }
    // The Redis session store needs the perimeter's Redis URL.
    let error = load(&[("MCP_SESSION_STORE", "redis")]).unwrap_err();
    assert_eq!(error.setting(), "MCP_REDIS_URL");
    let shared = load(&[
        ("MCP_SESSION_STORE", "Redis"),
        ("MCP_REDIS_URL", "redis://127.0.0.1:6379"),
    ])
    .unwrap();
    assert_eq!(shared.sessions.store, SessionStorage::Redis);
    // `/status` shows them, an authorization server's password hidden.
    let shown = load(&[(
        "MCP_OAUTH_AUTHORIZATION_SERVERS",
        "https://user:s3cret-pw@idp.example",
    )])
    .unwrap()
    .redacted_json();
    assert_eq!(shown["metrics_port"], serde_json::Value::Null);
    assert_eq!(shown["ws_ping_interval"], 30);
    assert_eq!(shown["session_store"], "memory");
    assert_eq!(
        shown["oauth_authorization_servers"],
        serde_json::json!(["https://user:<redacted>@idp.example"])
    );
}
