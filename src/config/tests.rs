use std::path::PathBuf;
use std::time::Duration;

use super::settings::key_of;
use super::suggest::{closest, edit_distance};
use super::value::parse_list;
use super::*;
use crate::url_text::redact as redact_url;

fn load(vars: &[(&str, &str)]) -> Result<WardenConfig, ConfigError> {
    WardenConfig::from_vars(vars.iter().copied())
}

fn setting(vars: &[(&str, &str)]) -> String {
    load(vars).unwrap_err().setting().to_owned()
}

#[test]
fn defaults() {
    let config = load(&[]).unwrap();
    assert_eq!(config, WardenConfig::default());
    assert_eq!(config.host, "127.0.0.1");
    assert_eq!(config.port, 8000);
    assert_eq!(config.environment, Environment::Development);
    assert_eq!(config.auth_mode, AuthMode::Jwt);
    assert_eq!(config.jwt_leeway_seconds, 30);
    assert_eq!(config.max_body_bytes, 1_048_576);
    assert_eq!(config.allowed_hosts, ["localhost", "127.0.0.1", "[::1]"]);
    assert!(config.allowed_origins.is_empty());
    assert_eq!(config.client_cert_header, "X-SSL-Client-Verify");
    assert_eq!(config.client_cert_header_value, "SUCCESS");
    assert_eq!(config.trusted_proxy_depth, 1);
    assert!(config.rate_limit_enabled);
    assert_eq!(
        config.rate_limit_quota,
        RateLimitQuota::PerMinute {
            requests: 120,
            burst: 120
        }
    );
    assert_eq!(config.rate_limit_storage, RateLimitStorage::Memory);
    assert_eq!(config.redis_url, None);
    assert_eq!(
        config.rate_limit_fail_mode,
        crate::rate_limit::FailMode::Local
    );
    assert_eq!(config.rate_limit_max_keys, 100_000);
    assert!(config.tool_rate_limits.is_empty());
    assert_eq!(config.rate_limit_ipv6_prefix, 64);
}

#[test]
fn lists_in_both_spellings() {
    assert_eq!(parse_list("a, b,,c ").unwrap(), ["a", "b", "c"]);
    assert_eq!(
        parse_list(r#" ["a", " b" ,"c\"d"] "#).unwrap(),
        ["a", "b", "c\"d"]
    );
    assert_eq!(parse_list("[]").unwrap(), Vec::<String>::new());
    assert_eq!(
        parse_list(r#"["\u00e9\ud83d\ude00\/\n"]"#).unwrap(),
        ["é😀/"]
    );
    for bad in [
        "[",
        "[\"a\"",
        "[\"a\",]",
        "[a]",
        "[\"a\" \"b\"]",
        "[1]",
        "[\"a\"] x",
        "[\"\\x\"]",
        "[\"\\ud83d\"]",
        "[\"\\u12\"]",
    ] {
        assert!(parse_list(bad).is_err(), "{bad}");
    }
    let config = load(&[
        ("MCP_ALLOWED_IPS", r#"["10.0.0.0/8","192.0.2.7"]"#),
        ("MCP_BLOCKED_IPS", "10.1.0.0/16, 2001:db8::/32"),
    ])
    .unwrap();
    assert_eq!(config.allowed_ips.len(), 2);
    assert_eq!(config.blocked_ips[1].to_string(), "2001:db8::/32");
}

#[test]
fn every_bad_value_names_its_variable() {
    for (name, value) in [
        ("MCP_HOST", "not a host!"),
        ("MCP_PORT", "eighty"),
        ("MCP_PORT", "70000"),
        ("MCP_ENVIRONMENT", "qa"),
        ("MCP_AUTH_MODE", "magic"),
        ("MCP_ALLOWED_IPS", "10.0.0.0/33"),
        ("MCP_BLOCKED_IPS", "[\"nope\"]"),
        ("MCP_TRUSTED_PROXIES", "10.0.0.1,bogus"),
        ("MCP_TRUST_X_FORWARDED", "maybe"),
        ("MCP_CLIENT_CERT_REQUIRED", "2"),
        ("MCP_TRUSTED_PROXY_DEPTH", "0"),
        ("MCP_TRUSTED_PROXY_DEPTH", "-1"),
        ("MCP_CLIENT_CERT_HEADER", "bad header"),
        ("MCP_CLIENT_CERT_HEADER_VALUE", "bad\u{1}value"),
        ("MCP_HTTP_MAX_BODY_BYTES", "0"),
        ("MCP_HTTP_MAX_BODY_BYTES", "1MB"),
        ("MCP_MAX_REQUEST_SIZE", "-5"),
        ("MCP_ALLOWED_ORIGINS", "evil.example"),
        ("MCP_ALLOWED_HOSTS", "https://x.example"),
        ("MCP_ALLOWED_HOSTS", "[]"),
    ] {
        assert_eq!(setting(&[(name, value)]), name, "{name}={value}");
    }
}

#[test]
fn unknown_mcp_variable_stops_start_up_naming_the_closest() {
    // `MCP_ENV=production` used to leave the server in development,
    // where `MCP_AUTH_MODE=none` is accepted.
    let error = load(&[("MCP_ENV", "production"), ("MCP_AUTH_MODE", "none")]).unwrap_err();
    assert_eq!(error.setting(), "MCP_ENV");
    assert_eq!(
        error.message(),
        "unknown setting MCP_ENV; did you mean MCP_ENVIRONMENT?"
    );
    for (typo, near) in [
        ("MCP_JWT_SECRT", "MCP_JWT_SECRET"),
        ("MCP_ALLOWED_IP", "MCP_ALLOWED_IPS"),
        ("MCP_RATELIMIT_RPM", "MCP_RATE_LIMIT_RPM"),
        ("mcp_port", "MCP_PORT"),
        ("MCP_REDIS_URI", "MCP_REDIS_URL"),
    ] {
        let error = load(&[(typo, "x")]);
        if typo.starts_with("MCP_") {
            let error = error.unwrap_err();
            assert_eq!(error.setting(), typo);
            assert!(
                error.message().ends_with(&format!("did you mean {near}?")),
                "{typo}: {error}"
            );
        } else {
            // Names are case-sensitive: only `MCP_` is the prefix.
            assert!(error.is_ok(), "{typo}");
        }
    }
    // Even an empty unknown variable is a typo worth stopping for.
    assert_eq!(setting(&[("MCP_ENV", "")]), "MCP_ENV");
    // Every known name, and other prefixes, still load.
    assert!(load(&[("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "3"), ("PATH", "/bin")]).is_ok());
    assert_eq!(closest("MCP_ENV", VARIABLES), Some("MCP_ENVIRONMENT"));
    assert_eq!(edit_distance("kitten", "sitting"), 3);
}

/// Every list setting, with a valid entry for it.
const LISTS: [(&str, &str); 11] = [
    ("MCP_ALLOWED_IPS", "10.0.0.0/8"),
    ("MCP_BLOCKED_IPS", "10.0.0.0/8"),
    ("MCP_TRUSTED_PROXIES", "10.0.0.1"),
    ("MCP_ALLOWED_HOSTS", "mcp.example.com"),
    ("MCP_ALLOWED_ORIGINS", "https://app.example.com"),
    ("MCP_CORS_ORIGINS", "https://app.example.com"),
    ("MCP_JWT_ISSUER", "https://idp.example"),
    ("MCP_JWT_AUDIENCE", "https://mcp.example/mcp"),
    ("MCP_API_KEYS", "api-key-0123456789abcdef"),
    ("MCP_ALLOWED_HOSTS", "[\"mcp.example.com\"]"),
    ("MCP_ALLOWED_IPS", "[\"::1\"]"),
];

#[test]
fn a_list_set_to_nothing_stops_start_up() {
    // `MCP_METRICS_ALLOWED_IPS=[]` (or `,`) used to open `/metrics` to
    // every address: an empty allow set admits everyone.
    for (name, good) in LISTS {
        assert!(load(&[(name, good)]).is_ok(), "{name}={good}");
        for empty in ["", " ", ",", " , ,", "[]", "[ ]", "[\"\"]", "[\" \", \"\"]"] {
            let error = load(&[(name, empty)]).unwrap_err();
            assert_eq!(error.setting(), name, "{name}={empty:?}");
            assert!(error.message().contains("lists nothing"), "{error}");
        }
    }
    // Unset keeps the documented default: loopback names for Host.
    assert_eq!(
        load(&[]).unwrap().allowed_hosts,
        WardenConfig::default().allowed_hosts
    );
}

#[cfg(feature = "config-file")]
#[test]
fn a_list_set_to_nothing_in_the_file_stops_start_up() {
    for (name, _) in LISTS {
        let key = key_of(name);
        for empty in ["[]", "\"\"", "\",\""] {
            let error = WardenConfig::from_toml(&format!("{key} = {empty}")).unwrap_err();
            assert_eq!(error.setting(), name, "{key} = {empty}");
        }
    }
}

#[test]
fn staging_follows_every_production_rule() {
    let staging = ("MCP_ENVIRONMENT", "staging");
    let key = ("MCP_JWT_SECRET", SECRET);
    assert!(load(&[staging, key]).is_ok());
    // Each production-only refusal, one by one.
    for (vars, refused) in [
        (vec![("MCP_CORS_ORIGINS", "*")], "MCP_CORS_ORIGINS"),
        (vec![("MCP_AUTH_MODE", "none")], "MCP_AUTH_MODE"),
        (
            vec![("MCP_JWKS_URL", "http://idp.example/jwks")],
            "MCP_JWKS_URL",
        ),
        (
            vec![("MCP_RESOURCE_URL", "http://mcp.example/mcp")],
            "MCP_RESOURCE_URL",
        ),
        (
            vec![("MCP_AUTH_MODE", "both"), ("MCP_API_KEYS", "short-key")],
            "MCP_API_KEYS",
        ),
    ] {
        let mut all = vec![staging, key];
        all.extend(vars);
        assert_eq!(setting(&all), refused, "{all:?}");
    }
    assert_eq!(
        setting(&[staging, ("MCP_JWT_SECRET", "too-short")]),
        "MCP_JWT_SECRET"
    );
    assert_eq!(setting(&[staging]), "MCP_JWT_SECRET", "a key is required");
    // And each production default.
    assert!(load(&[staging, key]).is_ok());
    assert!(Environment::Staging.follows_production_rules());
    assert!(Environment::Production.follows_production_rules());
    assert!(!Environment::Development.follows_production_rules());
}

#[test]
fn auth_mode_none_is_for_development_only() {
    for env in ["production", "PROD", "staging"] {
        assert_eq!(
            setting(&[("MCP_ENVIRONMENT", env), ("MCP_AUTH_MODE", "none")]),
            "MCP_AUTH_MODE"
        );
    }
    let config = load(&[("MCP_ENVIRONMENT", "dev"), ("MCP_AUTH_MODE", "NONE")]).unwrap();
    assert_eq!(config.environment, Environment::Development);
}

#[test]
fn forwarded_headers_and_certificates_need_trusted_proxies() {
    assert_eq!(
        setting(&[("MCP_TRUST_X_FORWARDED", "true")]),
        "MCP_TRUST_X_FORWARDED"
    );
    assert_eq!(
        setting(&[("MCP_CLIENT_CERT_REQUIRED", "yes")]),
        "MCP_CLIENT_CERT_REQUIRED"
    );
    let config = load(&[
        ("MCP_TRUST_X_FORWARDED", "TRUE"),
        ("MCP_CLIENT_CERT_REQUIRED", "on"),
        ("MCP_TRUSTED_PROXIES", "10.0.0.2"),
        ("MCP_TRUSTED_PROXY_DEPTH", "2"),
        ("MCP_CLIENT_CERT_HEADER", "X-Client-Verified"),
        ("MCP_CLIENT_CERT_HEADER_VALUE", "ok"),
    ])
    .unwrap();
    assert!(config.trust_x_forwarded && config.client_cert_required);
    assert_eq!(config.trusted_proxy_depth, 2);
    assert_eq!(config.client_cert_header, "X-Client-Verified");
    assert!(!format!("{config:?}").contains("\"ok\""));
    let off = load(&[
        ("MCP_TRUST_X_FORWARDED", "0"),
        ("MCP_CLIENT_CERT_REQUIRED", "off"),
    ])
    .unwrap();
    assert!(!off.trust_x_forwarded && !off.client_cert_required);
}

#[test]
fn body_limit_and_its_alias() {
    let n = |vars: &[(&str, &str)]| load(vars).unwrap().max_body_bytes;
    assert_eq!(n(&[("MCP_HTTP_MAX_BODY_BYTES", "2048")]), 2048);
    assert_eq!(n(&[("MCP_MAX_REQUEST_SIZE", "4096")]), 4096);
    assert_eq!(
        n(&[
            ("MCP_MAX_REQUEST_SIZE", "10"),
            ("MCP_HTTP_MAX_BODY_BYTES", "10")
        ]),
        10
    );
    assert_eq!(
        setting(&[
            ("MCP_MAX_REQUEST_SIZE", "10"),
            ("MCP_HTTP_MAX_BODY_BYTES", "20")
        ]),
        "MCP_HTTP_MAX_BODY_BYTES"
    );
}

#[test]
fn empty_values_are_unset_and_later_pairs_win() {
    let config = load(&[("MCP_PORT", "1"), ("MCP_PORT", "9000"), ("MCP_HOST", " ")]).unwrap();
    assert_eq!(config.port, 9000);
    assert_eq!(config.host, "127.0.0.1");
    let config = load(&[
        ("MCP_HOST", "0.0.0.0"),
        ("MCP_ALLOWED_HOSTS", "mcp.example.com, [::1]:8000"),
        (
            "MCP_ALLOWED_ORIGINS",
            r#"["https://app.example.com","http://localhost:*"]"#,
        ),
        ("OTHER", "x"),
    ])
    .unwrap();
    assert_eq!(config.allowed_hosts, ["mcp.example.com", "[::1]:8000"]);
    assert_eq!(config.allowed_origins.len(), 2);
    assert_eq!(
        load(&[("MCP_HOST", "mcp-1.internal")]).unwrap().host,
        "mcp-1.internal"
    );
}

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn production_needs_strong_jwt_keys() {
    let prod = ("MCP_ENVIRONMENT", "production");
    assert_eq!(setting(&[prod]), "MCP_JWT_SECRET");
    let err = load(&[prod, ("MCP_JWT_SECRET", "too-short")]).unwrap_err();
    assert_eq!(err.setting(), "MCP_JWT_SECRET");
    assert!(
        !err.to_string().contains("too-short"),
        "never echo a secret"
    );
    let config = load(&[prod, ("MCP_JWT_SECRET", SECRET)]).unwrap();
    assert_eq!(config.auth_mode, AuthMode::Jwt);
    assert!(!format!("{config:?}").contains(SECRET));
    // Development accepts a short secret (the server warns).
    assert!(load(&[("MCP_JWT_SECRET", "short")]).is_ok());
}

#[test]
fn jwt_settings_are_checked() {
    assert_eq!(
        setting(&[("MCP_JWT_ALGORITHM", "none")]),
        "MCP_JWT_ALGORITHM"
    );
    assert_eq!(
        setting(&[("MCP_JWT_SECRET", SECRET), ("MCP_JWT_ALGORITHM", "RS256")]),
        "MCP_JWT_ALGORITHM"
    );
    assert_eq!(
        setting(&[
            ("MCP_JWT_SECRET", SECRET),
            ("MCP_JWKS_URL", "https://idp/jwks")
        ]),
        "MCP_JWKS_URL"
    );
    assert_eq!(
        setting(&[("MCP_JWKS_FILE", "/nonexistent.json")]),
        "MCP_JWKS_FILE"
    );
    assert_eq!(setting(&[("MCP_JWKS_URL", "ftp://x")]), "MCP_JWKS_URL");
    assert_eq!(
        setting(&[
            ("MCP_ENVIRONMENT", "prod"),
            ("MCP_JWKS_URL", "http://idp.example/jwks")
        ]),
        "MCP_JWKS_URL",
        "plain http only in development or on loopback"
    );
    assert_eq!(
        setting(&[("MCP_JWT_LEEWAY_SECONDS", "9999")]),
        "MCP_JWT_LEEWAY_SECONDS"
    );
    let config = load(&[
        ("MCP_JWT_ALGORITHM", "es256"),
        ("MCP_JWT_ISSUER", "https://idp.example"),
        ("MCP_JWT_AUDIENCE", "https://mcp.example/mcp,api://mcp"),
        ("MCP_RESOURCE_URL", "https://mcp.example/mcp"),
    ])
    .unwrap();
    assert_eq!(config.jwt_algorithm.as_deref(), Some("ES256"));
    assert_eq!(
        config.jwt_audiences,
        ["https://mcp.example/mcp", "api://mcp"]
    );
}

#[test]
fn api_key_settings_are_checked() {
    assert_eq!(setting(&[("MCP_AUTH_MODE", "api_key")]), "MCP_API_KEYS");
    assert_eq!(
        setting(&[
            ("MCP_ENVIRONMENT", "production"),
            ("MCP_AUTH_MODE", "api_key"),
            ("MCP_API_KEYS", "short,also-short")
        ]),
        "MCP_API_KEYS"
    );
    assert_eq!(
        setting(&[
            ("MCP_AUTH_MODE", "both"),
            ("MCP_API_KEYS", "k"),
            ("MCP_API_KEY_SALT", "salt")
        ]),
        "MCP_API_KEY_SALT"
    );
    let config = load(&[
        ("MCP_AUTH_MODE", "API_KEY"),
        ("MCP_API_KEYS", "dev-key-1,dev-key-2"),
    ])
    .unwrap();
    assert_eq!(config.auth_mode, AuthMode::ApiKey);
    assert_eq!(config.api_keys.len(), 2);
    assert!(!format!("{config:?}").contains("dev-key-1"));
}

#[test]
fn tool_scopes_are_a_json_object_of_scopes() {
    let config = load(&[(
        "MCP_TOOL_SCOPES",
        r#"{"add":["tools:add"],"sleep":"tools:sleep admin"}"#,
    )])
    .unwrap();
    assert_eq!(
        config.tool_scopes,
        [
            ("add".to_owned(), vec!["tools:add".to_owned()]),
            (
                "sleep".to_owned(),
                vec!["tools:sleep".to_owned(), "admin".to_owned()]
            ),
        ]
    );
    for bad in ["[]", "{\"add\": 3}", "{\"add\": [1]}", "not json"] {
        assert_eq!(
            setting(&[("MCP_TOOL_SCOPES", bad)]),
            "MCP_TOOL_SCOPES",
            "{bad}"
        );
    }
}

#[test]
fn rate_limit_settings_are_read() {
    let config = load(&[
        ("MCP_RATE_LIMIT_ENABLED", "off"),
        ("MCP_RATE_LIMIT_STORAGE", "Redis"),
        ("MCP_REDIS_URL", "rediss://cache.internal:6380/2"),
        ("MCP_RATE_LIMIT_FAIL_MODE", "CLOSED"),
        ("MCP_RATE_LIMIT_MAX_KEYS", "5000"),
        ("MCP_TOOL_RATE_LIMITS", r#"{"search": 30, "add": 600}"#),
        ("MCP_RATE_LIMIT_IPV6_PREFIX", "56"),
        ("MCP_RATE_LIMIT_REDIS_PREFIX", "app-a:rl:"),
    ])
    .unwrap();
    assert_eq!(config.rate_limit_redis_prefix, "app-a:rl:");
    let gateway = load(&[
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "3"),
        ("CIRCUIT_BREAKER_RESET_TIMEOUT", "2500"),
    ])
    .unwrap();
    assert_eq!(gateway.circuit_breaker_failure_threshold, 3);
    assert_eq!(
        gateway.circuit_breaker_reset_timeout,
        Duration::from_millis(2500)
    );
    let defaults = load(&[]).unwrap();
    assert_eq!(defaults.circuit_breaker_failure_threshold, 5);
    assert_eq!(
        defaults.circuit_breaker_reset_timeout,
        Duration::from_secs(60)
    );
    assert!(!config.rate_limit_enabled);
    assert_eq!(config.rate_limit_storage, RateLimitStorage::Redis);
    assert_eq!(
        config.redis_url.as_deref(),
        Some("rediss://cache.internal:6380/2")
    );
    assert_eq!(
        config.rate_limit_fail_mode,
        crate::rate_limit::FailMode::Closed
    );
    assert_eq!(config.rate_limit_max_keys, 5000);
    assert_eq!(
        config.tool_rate_limits,
        [("add".to_owned(), 600), ("search".to_owned(), 30)]
    );
    assert_eq!(config.rate_limit_ipv6_prefix, 56);
    // `open` is allowed outside development: the operator asked for it.
    let open = load(&[
        ("MCP_ENVIRONMENT", "production"),
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_RATE_LIMIT_FAIL_MODE", "open"),
    ])
    .unwrap();
    assert_eq!(open.rate_limit_fail_mode, crate::rate_limit::FailMode::Open);
    // A URL without Redis storage is kept (and still checked).
    assert!(
        load(&[("MCP_REDIS_URL", "redis://localhost")])
            .unwrap()
            .redis_url
            .is_some()
    );
}

#[test]
fn rate_limit_quota_in_both_forms() {
    let quota = |vars: &[(&str, &str)]| load(vars).unwrap().rate_limit_quota;
    assert_eq!(
        quota(&[("MCP_RATE_LIMIT_RPM", "300")]),
        RateLimitQuota::PerMinute {
            requests: 300,
            burst: 300
        },
        "the burst defaults to the rate"
    );
    assert_eq!(
        quota(&[("MCP_RATE_LIMIT_RPM", "60"), ("MCP_RATE_LIMIT_BURST", "10")]),
        RateLimitQuota::PerMinute {
            requests: 60,
            burst: 10
        }
    );
    assert_eq!(
        quota(&[("MCP_RATE_LIMIT_BURST", "5")]),
        RateLimitQuota::PerMinute {
            requests: 120,
            burst: 5
        }
    );
    assert_eq!(
        quota(&[
            ("RATE_LIMIT_WINDOW_MS", "900000"),
            ("RATE_LIMIT_MAX_REQUESTS", "100")
        ]),
        RateLimitQuota::Window {
            window: Duration::from_secs(900),
            max_requests: 100
        }
    );
    // Both forms: the error names the second.
    for first in ["MCP_RATE_LIMIT_RPM", "MCP_RATE_LIMIT_BURST"] {
        assert_eq!(
            setting(&[
                (first, "60"),
                ("RATE_LIMIT_WINDOW_MS", "1000"),
                ("RATE_LIMIT_MAX_REQUESTS", "10")
            ]),
            "RATE_LIMIT_WINDOW_MS"
        );
    }
    // The window form needs both of its variables.
    assert_eq!(
        setting(&[("RATE_LIMIT_WINDOW_MS", "1000")]),
        "RATE_LIMIT_WINDOW_MS"
    );
    assert_eq!(
        setting(&[("RATE_LIMIT_MAX_REQUESTS", "10")]),
        "RATE_LIMIT_MAX_REQUESTS"
    );
    // More requests than nanoseconds in the window.
    assert_eq!(
        setting(&[
            ("RATE_LIMIT_WINDOW_MS", "1"),
            ("RATE_LIMIT_MAX_REQUESTS", "1000001")
        ]),
        "RATE_LIMIT_MAX_REQUESTS"
    );
    assert!(
        load(&[
            ("RATE_LIMIT_WINDOW_MS", "1"),
            ("RATE_LIMIT_MAX_REQUESTS", "1000000")
        ])
        .is_ok()
    );
}

#[cfg(feature = "rate-limit")]
#[test]
fn every_accepted_quota_makes_a_store_quota() {
    use crate::rate_limit::Quota;
    for vars in [
        &[("MCP_RATE_LIMIT_RPM", "4294967295")][..],
        &[
            ("RATE_LIMIT_WINDOW_MS", "1"),
            ("RATE_LIMIT_MAX_REQUESTS", "1000000"),
        ],
        &[
            ("RATE_LIMIT_WINDOW_MS", "86400000"),
            ("RATE_LIMIT_MAX_REQUESTS", "4294967295"),
        ],
    ] {
        let made = match load(vars).unwrap().rate_limit_quota {
            RateLimitQuota::PerMinute { requests, burst } => {
                Quota::per_minute(requests).and_then(|q| q.with_burst(burst))
            }
            RateLimitQuota::Window {
                window,
                max_requests,
            } => Quota::per_window(window, max_requests),
        };
        assert!(made.is_ok(), "{vars:?}");
    }
}

#[test]
fn every_bad_rate_limit_value_names_its_variable() {
    for (name, value) in [
        ("MCP_RATE_LIMIT_ENABLED", "sometimes"),
        ("MCP_RATE_LIMIT_RPM", "0"),
        ("MCP_RATE_LIMIT_RPM", "-1"),
        ("MCP_RATE_LIMIT_RPM", "1.5"),
        ("MCP_RATE_LIMIT_RPM", "4294967296"),
        ("MCP_RATE_LIMIT_BURST", "0"),
        ("MCP_RATE_LIMIT_BURST", "many"),
        ("RATE_LIMIT_WINDOW_MS", "0"),
        ("RATE_LIMIT_WINDOW_MS", "86400001"),
        ("RATE_LIMIT_MAX_REQUESTS", "0"),
        ("MCP_RATE_LIMIT_STORAGE", "postgres"),
        ("MCP_RATE_LIMIT_STORAGE", "redis"),
        ("MCP_REDIS_URL", "http://cache:6379"),
        ("MCP_REDIS_URL", "cache:6379"),
        ("MCP_REDIS_URL", "redis://"),
        ("MCP_REDIS_URL", "redis://:pw@/0"),
        ("MCP_REDIS_URL", "redis://cache 6379"),
        ("MCP_REDIS_CA_FILE", "/nonexistent/ca.pem"),
        // A readable file, but no rediss:// URL to use it with.
        ("MCP_REDIS_CA_FILE", "Cargo.toml"),
        ("MCP_RATE_LIMIT_FAIL_MODE", "sometimes"),
        ("MCP_RATE_LIMIT_MAX_KEYS", "0"),
        ("MCP_RATE_LIMIT_MAX_KEYS", "lots"),
        ("MCP_TOOL_RATE_LIMITS", "not json"),
        ("MCP_TOOL_RATE_LIMITS", "[30]"),
        ("MCP_TOOL_RATE_LIMITS", r#"{"search": 0}"#),
        ("MCP_TOOL_RATE_LIMITS", r#"{"search": -3}"#),
        ("MCP_TOOL_RATE_LIMITS", r#"{"search": 1.5}"#),
        ("MCP_TOOL_RATE_LIMITS", r#"{"search": "30"}"#),
        ("MCP_TOOL_RATE_LIMITS", r#"{"search": 4294967296}"#),
        ("MCP_RATE_LIMIT_IPV6_PREFIX", "0"),
        ("MCP_RATE_LIMIT_IPV6_PREFIX", "129"),
        ("MCP_RATE_LIMIT_IPV6_PREFIX", "/64"),
        ("MCP_RATE_LIMIT_REDIS_PREFIX", "has space"),
        ("CIRCUIT_BREAKER_FAILURE_THRESHOLD", "0"),
        ("CIRCUIT_BREAKER_RESET_TIMEOUT", "0"),
        ("CIRCUIT_BREAKER_RESET_TIMEOUT", "1s"),
    ] {
        let paired = if name == "RATE_LIMIT_WINDOW_MS" {
            ("RATE_LIMIT_MAX_REQUESTS", "10")
        } else if name == "RATE_LIMIT_MAX_REQUESTS" {
            ("RATE_LIMIT_WINDOW_MS", "1000")
        } else {
            ("MCP_HOST", "127.0.0.1")
        };
        let expected = if (name, value) == ("MCP_RATE_LIMIT_STORAGE", "redis") {
            "MCP_REDIS_URL"
        } else {
            name
        };
        assert_eq!(
            setting(&[paired, (name, value)]),
            expected,
            "{name}={value}"
        );
    }
}

#[test]
fn redis_passwords_are_never_printed() {
    let password = "hunter2-s3cret";
    for (url, shown) in [
        (
            format!("redis://app:{password}@cache:6379/0"),
            "redis://app:<redacted>@cache:6379/0",
        ),
        (
            format!("rediss://:{password}@cache"),
            "rediss://:<redacted>@cache",
        ),
        (
            format!("redis://{password}@cache"),
            "redis://<redacted>@cache",
        ),
        (
            format!("redis://app:{password}/with@slash@cache:6379"),
            "redis://app:<redacted>@cache:6379",
        ),
    ] {
        let config = load(&[("MCP_RATE_LIMIT_STORAGE", "redis"), ("MCP_REDIS_URL", &url)]).unwrap();
        assert_eq!(config.redis_url.as_deref(), Some(url.as_str()));
        let debug = format!("{config:?}");
        assert!(!debug.contains(password), "{debug}");
        assert!(debug.contains(shown), "{debug}");
    }
    let plain = load(&[("MCP_REDIS_URL", "redis://cache:6379")]).unwrap();
    assert!(format!("{plain:?}").contains("redis://cache:6379"));
    let err = load(&[("MCP_REDIS_URL", &format!("http://:{password}@cache"))]).unwrap_err();
    assert_eq!(err.setting(), "MCP_REDIS_URL");
    assert!(!err.to_string().contains(password), "{err}");
}

#[test]
fn operations_settings() {
    let config = load(&[
        (
            "MCP_CORS_ORIGINS",
            "https://app.example.com, http://localhost:6274",
        ),
        ("MCP_REQUEST_TIMEOUT", "5"),
        ("MCP_TOOL_TIMEOUTS", r#"{"sleep": 250, "*.search": 60000}"#),
        (
            "MCP_TOOL_ANNOTATION_SCOPES",
            r#"{"destructiveHint": "tools:write admin"}"#,
        ),
        (
            "MCP_TOOL_ANNOTATIONS_OFF",
            r#"{"openWorldHint": ["kids", "guests"]}"#,
        ),
        ("MCP_ADMIN_ROLE", "ops"),
    ])
    .unwrap();
    assert_eq!(
        config.tool_timeouts,
        [
            ("*.search".to_owned(), Duration::from_secs(60)),
            ("sleep".to_owned(), Duration::from_millis(250)),
        ]
    );
    assert_eq!(
        config.cors_origins,
        ["https://app.example.com", "http://localhost:6274"]
    );
    assert_eq!(config.request_timeout, Duration::from_secs(5));
    assert_eq!(config.admin_role, "ops");
    assert_eq!(
        config.tool_annotation_scopes,
        [(
            "destructiveHint".to_owned(),
            vec!["tools:write".to_owned(), "admin".to_owned()]
        )]
    );
    assert_eq!(
        config.tool_annotations_off,
        [(
            "openWorldHint".to_owned(),
            vec!["kids".to_owned(), "guests".to_owned()]
        )]
    );

    let defaults = load(&[]).unwrap();
    assert_eq!(defaults.request_timeout, Duration::from_secs(30));
    assert!(defaults.tool_timeouts.is_empty());
}

#[test]
fn bad_operations_settings_name_their_variable() {
    for (name, value) in [
        ("MCP_CORS_ORIGINS", "https://app.example.com/path"),
        ("MCP_CORS_ORIGINS", "app.example.com"),
        ("MCP_TOOL_ANNOTATION_SCOPES", r#"{"safeHint": ["x"]}"#),
        ("MCP_TOOL_ANNOTATION_SCOPES", r#"["destructiveHint"]"#),
        ("MCP_TOOL_ANNOTATION_SCOPES", r#"{"destructiveHint": []}"#),
        (
            "MCP_TOOL_ANNOTATIONS_OFF",
            r#"{"openWorldHint": "Acme Corp"}"#,
        ),
        ("MCP_TOOL_ANNOTATIONS_OFF", r#"{"openWorldHint": 3}"#),
        ("MCP_TOOL_TIMEOUTS", "5000"),
        ("MCP_TOOL_TIMEOUTS", r#"{"sleep": 0}"#),
        ("MCP_TOOL_TIMEOUTS", r#"{"sleep": 1.5}"#),
        ("MCP_TOOL_TIMEOUTS", r#"{"sleep": "5s"}"#),
        ("MCP_TOOL_TIMEOUTS", r#"{"sleep": 86400001}"#),
        ("MCP_CORS_ORIGINS", "*,https://a.example"),
        ("MCP_REQUEST_TIMEOUT", "0"),
        ("MCP_REQUEST_TIMEOUT", "1.5"),
        ("MCP_ADMIN_ROLE", "a b"),
    ] {
        assert_eq!(setting(&[(name, value)]), name, "{name}={value}");
    }
    // `*` is a development convenience only.
    assert!(load(&[("MCP_CORS_ORIGINS", "*")]).is_ok());
    let error = load(&[
        ("MCP_ENVIRONMENT", "production"),
        ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("MCP_CORS_ORIGINS", "*"),
    ])
    .unwrap_err();
    assert_eq!(error.setting(), "MCP_CORS_ORIGINS");
}

#[test]
fn redacted_json_hides_every_secret() {
    let config = load(&[
        ("MCP_JWT_SECRET", "jwt-secret-0123456789abcdef-0123456"),
        ("MCP_API_KEYS", "api-key-0123456789abcdef"),
        ("MCP_API_KEY_SALT", "salt-0123456789abcdef"),
        ("MCP_CLIENT_CERT_HEADER_VALUE", "proxy-shared-value"),
        (
            "MCP_REDIS_URL",
            "redis://user:redis-password@127.0.0.1:6379",
        ),
    ])
    .unwrap();
    let text = config.redacted_json().to_string();
    for secret in [
        "jwt-secret",
        "api-key-0123",
        "salt-0123",
        "proxy-shared-value",
        "redis-password",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let json = config.redacted_json();
    assert_eq!(json["jwt_secret"], "<redacted>");
    assert_eq!(json["port"], 8000);
    assert_eq!(json["rate_limit_quota"]["requests_per_minute"], 120);
    assert_eq!(json["redis_url"], "redis://user:<redacted>@127.0.0.1:6379");
    // Every key is a settings-file key, so the page reads like the file.
    #[cfg(feature = "config-file")]
    for key in json.as_object().unwrap().keys() {
        let known = VARIABLES.iter().any(|v| key_of(v) == *key) || key == "rate_limit_quota";
        assert!(known, "{key} is not a settings-file key");
    }
}

#[test]
fn url_credentials_never_show() {
    // `/status` used to print `?password=` and `?token=` values, and
    // the user info of every URL setting but two.
    let leaks = ["s3cret-pw", "s3cret-tok", "s3cret-key", "s3cret-frag"];
    let with = |base: &str| {
        format!("{base}?password=s3cret-pw&token=s3cret-tok&key=s3cret-key#s3cret-frag")
    };
    let https = with("https://user:s3cret-pw@idp.example/jwks");
    let redis = with("redis://user:s3cret-pw@127.0.0.1:6379/0");
    let config = load(&[
        ("MCP_JWKS_URL", &https),
        ("MCP_RESOURCE_URL", &https),
        ("MCP_JWT_ISSUER", &https),
        ("MCP_JWT_AUDIENCE", &https),
        ("MCP_REDIS_URL", &redis),
    ])
    .unwrap();
    let json = config.redacted_json();
    let debug = format!("{config:?}");
    for text in [json.to_string(), debug] {
        for leak in leaks {
            assert!(!text.contains(leak), "{leak} leaked: {text}");
        }
    }
    assert_eq!(
        json["jwks_url"],
        "https://user:<redacted>@idp.example/jwks?password=<redacted>&token=<redacted>&key=<redacted>#<redacted>"
    );
    assert_eq!(
        json["redis_url"],
        "redis://user:<redacted>@127.0.0.1:6379/0?password=<redacted>&token=<redacted>&key=<redacted>#<redacted>"
    );
    assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    assert_eq!(
        redact_url("redis://h/?password=a@b"),
        "redis://<redacted>@b"
    );
    // Nor in the error of a URL that is refused.
    for (name, bad) in [
        ("MCP_JWKS_URL", with("ftp://user:s3cret-pw@idp.example/")),
        (
            "MCP_RESOURCE_URL",
            with("ftp://user:s3cret-pw@idp.example/"),
        ),
        ("MCP_REDIS_URL", with("http://user:s3cret-pw@cache/")),
        (
            "MCP_CORS_ORIGINS",
            with("https://user:s3cret-pw@app.example"),
        ),
    ] {
        let error = load(&[(name, &bad)]).unwrap_err();
        assert_eq!(error.setting(), name);
        for leak in leaks {
            assert!(!error.to_string().contains(leak), "{leak} leaked: {error}");
        }
    }
}

#[cfg(feature = "config-file")]
mod settings_file {
    use super::*;

    fn write(text: &str) -> (PathBuf, impl Drop) {
        struct Remove(PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "tower-warden-config-{}-{n}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        (path.clone(), Remove(path))
    }

    const FILE: &str = r#"
port = 9000
allowed_ips = ["10.0.0.0/8", "192.0.2.7"]
trust_x_forwarded = true
trusted_proxies = ["10.0.0.1"]
circuit_breaker_failure_threshold = 3

[rate_limit]
rpm = 600
burst = 50

[tool_scopes]
delete_record = ["records:write"]

[tool_rate_limits]
search = 30
"#;

    #[test]
    fn file_settings_and_env_over_file_over_defaults() {
        let (path, _guard) = write(FILE);
        let path = path.to_str().unwrap();
        let config = load(&[("MCP_CONFIG_FILE", path), ("MCP_PORT", "9001")]).unwrap();
        // The environment wins over the file...
        assert_eq!(config.port, 9001);
        // ...the file over the defaults, in nested tables too.
        assert_eq!(config.allowed_ips.len(), 2);
        assert!(config.trust_x_forwarded);
        assert_eq!(config.circuit_breaker_failure_threshold, 3);
        assert_eq!(
            config.rate_limit_quota,
            RateLimitQuota::PerMinute {
                requests: 600,
                burst: 50
            }
        );
        assert_eq!(
            config.tool_scopes,
            [("delete_record".to_owned(), vec!["records:write".to_owned()])]
        );
        assert_eq!(config.tool_rate_limits, [("search".to_owned(), 30)]);
        assert_eq!(
            config.config_file.as_deref(),
            Some(std::path::Path::new(path))
        );
        // What the file leaves out keeps its default.
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        // An empty variable counts as unset, so the file's value stands.
        let config = load(&[("MCP_CONFIG_FILE", path), ("MCP_PORT", "")]).unwrap();
        assert_eq!(config.port, 9000);
    }

    #[test]
    fn toml_and_serde_read_the_same_keys() {
        let from_toml = WardenConfig::from_toml(FILE).unwrap();
        let from_serde: WardenConfig = toml::from_str(FILE).unwrap();
        assert_eq!(from_toml, from_serde);
        assert_eq!(from_toml.port, 9000);
        // Upper-case variable names work too (a copied env file).
        let config = WardenConfig::from_toml(
            "MCP_PORT = 9002\nRATE_LIMIT_WINDOW_MS = 1000\nRATE_LIMIT_MAX_REQUESTS = 5",
        )
        .unwrap();
        assert_eq!(config.port, 9002);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let error = WardenConfig::from_toml("jwt_secrt = \"x\"").unwrap_err();
        assert_eq!(error.setting(), "jwt_secrt");
        assert!(
            error.message().contains("did you mean jwt_secret?"),
            "{error}"
        );
        let error = WardenConfig::from_toml("[rate_limit]\nrpmm = 3").unwrap_err();
        assert_eq!(error.setting(), "rate_limit.rpmm");
        assert!(
            error.message().contains("did you mean rate_limit_rpm?"),
            "{error}"
        );
        assert!(!error.message().contains('3'), "{error}");
        // A file cannot name another file.
        assert_eq!(
            WardenConfig::from_toml("config_file = \"/etc/x\"")
                .unwrap_err()
                .setting(),
            "config_file"
        );
        // The same setting twice (flat and nested) is refused.
        let error =
            WardenConfig::from_toml("rate_limit_rpm = 1\n[rate_limit]\nrpm = 2").unwrap_err();
        assert_eq!(error.setting(), "MCP_RATE_LIMIT_RPM");
    }

    #[test]
    fn an_empty_or_odd_key_is_named_quoted() {
        // Found by the `settings` fuzz target: `"" = 1` was refused as
        // "unknown setting  in the TOML text", naming nothing.
        for (text, shown) in [
            ("\"\" = 1", "\"\""),
            ("\"a b\" = 1", "\"a b\""),
            ("[rate_limit]\n\"\" = 1", "rate_limit.\"\""),
        ] {
            let error = WardenConfig::from_toml(text).unwrap_err();
            assert_eq!(error.setting(), shown, "{text}");
            assert!(
                error
                    .message()
                    .starts_with(&format!("unknown setting {shown} in the TOML text")),
                "{error}"
            );
        }
    }

    #[test]
    fn bad_value_names_variable_and_file_key() {
        let (path, _guard) = write("[rate_limit]\nrpm = 0\n");
        let error = load(&[("MCP_CONFIG_FILE", path.to_str().unwrap())]).unwrap_err();
        assert_eq!(error.setting(), "MCP_RATE_LIMIT_RPM");
        assert!(error.message().contains("rate_limit.rpm in "), "{error}");
        assert!(error.message().contains(path.to_str().unwrap()), "{error}");
        // The same bad value from the environment says nothing of a file.
        let error = load(&[("MCP_RATE_LIMIT_RPM", "0")]).unwrap_err();
        assert!(!error.message().contains(" in "), "{error}");
        // Wrong types: a float where a whole number belongs.
        let error = WardenConfig::from_toml("port = 80.5").unwrap_err();
        assert_eq!(error.setting(), "MCP_PORT");
    }

    #[test]
    fn syntax_error_never_echoes_the_line() {
        let error =
            WardenConfig::from_toml("port = 1\njwt_secret = \"top-secret-value\n").unwrap_err();
        assert_eq!(error.setting(), "MCP_CONFIG_FILE");
        assert!(error.message().contains("line 2"), "{error}");
        assert!(!error.to_string().contains("top-secret"), "{error}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let error = load(&[("MCP_CONFIG_FILE", "/nonexistent/mcp.toml")]).unwrap_err();
        assert_eq!(error.setting(), "MCP_CONFIG_FILE");
        assert!(error.message().contains("/nonexistent/mcp.toml"), "{error}");
    }

    #[test]
    fn every_variable_has_a_distinct_file_key() {
        let mut keys: Vec<String> = VARIABLES.iter().map(|v| key_of(v)).collect();
        keys.sort();
        let before = keys.len();
        keys.dedup();
        assert_eq!(before, keys.len());
    }
}

/// Every setting declared secret is hidden in both views (`redacted_json`
/// and `Debug`), and the declared secrets are exactly the known ones, so
/// a secret declared as a plain setting fails here too.
#[test]
fn every_declared_secret_is_hidden_in_both_views() {
    use super::settings::{Redaction, SETTINGS};
    // A value each secret accepts; a new secret needs one here.
    let samples = [
        ("MCP_CLIENT_CERT_HEADER_VALUE", "declared-secret-header"),
        ("MCP_JWT_SECRET", "declared-secret-jwt-0123456789abcdef"),
        (
            "MCP_INTROSPECTION_CLIENT_SECRET",
            "declared-secret-introspection",
        ),
        (
            "MCP_TOKEN_EXCHANGE_CLIENT_SECRET",
            "declared-secret-token-exchange",
        ),
        ("MCP_API_KEYS", "declared-secret-api-key-0123"),
        ("MCP_API_KEY_SALT", "declared-secret-salt-0123"),
    ];
    let secrets: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| s.redaction == Redaction::Secret)
        .map(|s| s.name)
        .collect();
    assert_eq!(secrets, samples.map(|(name, _)| name));
    for (name, value) in samples {
        // What a secret needs beside it to be read at all.
        let companions: &[(&str, &str)] = match name {
            "MCP_INTROSPECTION_CLIENT_SECRET" => &[
                (
                    "MCP_INTROSPECTION_URL",
                    "https://idp.example.com/introspect",
                ),
                ("MCP_INTROSPECTION_CLIENT_ID", "mcp-server"),
            ],
            "MCP_TOKEN_EXCHANGE_CLIENT_SECRET" => &[
                ("MCP_TOKEN_EXCHANGE_URL", "https://idp.example.com/token"),
                ("MCP_TOKEN_EXCHANGE_CLIENT_ID", "mcp-gateway"),
            ],
            _ => &[],
        };
        let mut vars = vec![(name, value)];
        vars.extend_from_slice(companions);
        let config = load(&vars).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = config.redacted_json();
        for view in [json.to_string(), format!("{config:?}")] {
            assert!(!view.contains(value), "{name} leaked: {view}");
        }
        let shown = &json[key_of(name)];
        assert!(
            shown
                .as_str()
                .is_some_and(|s| s.starts_with('<') && s.ends_with("redacted>")),
            "{name}: {shown}"
        );
    }
}

/// The Redis store names its own parameters (`url`, `ca_pem`); config
/// relabels them with the variables that fed them.
#[cfg(feature = "redis")]
#[test]
fn redis_store_errors_are_named_by_the_variables() {
    use crate::rate_limit::{RedisStore, redis_client};
    let err = redis_client("redis://127.0.0.1/", Some(b"x")).unwrap_err();
    assert_eq!(err.setting(), "ca_pem");
    assert_eq!(relabel_redis_error(err).setting(), "MCP_REDIS_CA_FILE");
    let err = RedisStore::new("redis//nope").unwrap_err();
    assert_eq!(relabel_redis_error(err).setting(), "MCP_REDIS_URL");
    let other = ConfigError::new("MCP_PORT", "not a port");
    assert_eq!(relabel_redis_error(other.clone()), other);
}

/// What an operator sees: a CA file without a certificate is reported by
/// its variable when the stack builds the Redis store.
#[cfg(all(feature = "stack", feature = "redis-tls"))]
#[test]
fn the_stack_names_a_bad_redis_ca_file_by_its_variable() {
    let path =
        std::env::temp_dir().join(format!("tower-warden-not-a-ca-{}.pem", std::process::id()));
    std::fs::write(&path, "not a certificate").unwrap();
    let config = load(&[
        ("MCP_JWT_SECRET", SECRET),
        ("MCP_RATE_LIMIT_STORAGE", "redis"),
        ("MCP_REDIS_URL", "rediss://127.0.0.1:1/"),
        ("MCP_REDIS_CA_FILE", path.to_str().unwrap()),
    ]);
    let err = config.map(|c| crate::stack::WardenLayer::from_config(&c).map(|_| ()));
    std::fs::remove_file(&path).ok();
    let err = err.unwrap().unwrap_err();
    assert_eq!(err.setting(), "MCP_REDIS_CA_FILE", "{err}");
    assert!(err.message().contains("no PEM certificate"), "{err}");
}

#[test]
fn dpop_defaults_to_allowed_and_refuses_unknown_or_blank_modes() {
    let config = load(&[]).unwrap();
    assert_eq!(config.dpop, DpopMode::Allowed);
    assert_eq!(config.dpop_max_age_seconds, DEFAULT_DPOP_MAX_AGE_SECONDS);
    for (value, mode) in [
        ("off", DpopMode::Off),
        ("Allowed", DpopMode::Allowed),
        ("REQUIRED", DpopMode::Required),
    ] {
        assert_eq!(load(&[("MCP_DPOP", value)]).unwrap().dpop, mode, "{value}");
    }
    for value in ["", " ", "on", "true", "optional", "none"] {
        let error = load(&[("MCP_DPOP", value)]).unwrap_err();
        assert_eq!(error.setting(), "MCP_DPOP", "{value:?}");
    }
    for value in ["0", "301", "-1", "1m", ""] {
        if value.is_empty() {
            // Blank: the default.
            assert!(load(&[("MCP_DPOP_MAX_AGE_SECONDS", value)]).is_ok());
            continue;
        }
        assert_eq!(
            setting(&[("MCP_DPOP_MAX_AGE_SECONDS", value)]),
            "MCP_DPOP_MAX_AGE_SECONDS",
            "{value}"
        );
    }
    assert_eq!(
        load(&[("MCP_DPOP_MAX_AGE_SECONDS", "120")])
            .unwrap()
            .dpop_max_age_seconds,
        120
    );
}

#[test]
fn dpop_required_refuses_api_keys_which_cannot_be_bound() {
    for mode in ["api_key", "both"] {
        let error = load(&[
            ("MCP_AUTH_MODE", mode),
            ("MCP_API_KEYS", "sk-a-long-enough-key-0001"),
            ("MCP_DPOP", "required"),
        ])
        .unwrap_err();
        assert_eq!(error.setting(), "MCP_DPOP", "{mode}");
    }
    let config = load(&[("MCP_DPOP", "required")]).unwrap();
    assert_eq!(config.dpop, DpopMode::Required);
    assert_eq!(config.redacted_json()["dpop"], "required");
}

#[test]
fn introspection_settings_are_all_or_nothing() {
    let url = (
        "MCP_INTROSPECTION_URL",
        "https://idp.example.com/introspect",
    );
    let id = ("MCP_INTROSPECTION_CLIENT_ID", "mcp-server");
    let secret = ("MCP_INTROSPECTION_CLIENT_SECRET", "s3cret-of-the-server");
    let config = load(&[url, id, secret]).unwrap();
    assert_eq!(
        config.introspection_url.as_deref(),
        Some("https://idp.example.com/introspect")
    );
    assert_eq!(
        config.introspection_client_auth.as_deref(),
        Some("client_secret_basic")
    );
    assert_eq!(config.introspection_cache_ttl_seconds, 60);
    assert_eq!(config.introspection_fail_mode, "closed");
    assert!(
        !config.redacted_json().to_string().contains("s3cret"),
        "the secret is never shown"
    );
    let post = load(&[
        url,
        id,
        secret,
        ("MCP_INTROSPECTION_CLIENT_AUTH", "client_secret_post"),
        ("MCP_INTROSPECTION_CACHE_TTL_SECONDS", "0"),
        ("MCP_INTROSPECTION_FAIL_MODE", "cached"),
    ])
    .unwrap();
    assert_eq!(
        post.introspection_client_auth.as_deref(),
        Some("client_secret_post")
    );
    assert_eq!(post.introspection_cache_ttl_seconds, 0);
    assert_eq!(post.introspection_fail_mode, "cached");

    let key = ("MCP_INTROSPECTION_CLIENT_KEY_FILE", "Cargo.toml");
    for (vars, name) in [
        // Set for nothing: no URL.
        (vec![id], "MCP_INTROSPECTION_CLIENT_ID"),
        (vec![secret], "MCP_INTROSPECTION_CLIENT_SECRET"),
        (
            vec![("MCP_INTROSPECTION_FAIL_MODE", "cached")],
            "MCP_INTROSPECTION_FAIL_MODE",
        ),
        // A URL without who asks, or with two credentials.
        (vec![url, secret], "MCP_INTROSPECTION_CLIENT_ID"),
        (vec![url, id], "MCP_INTROSPECTION_CLIENT_SECRET"),
        (
            vec![url, id, secret, key],
            "MCP_INTROSPECTION_CLIENT_KEY_FILE",
        ),
        // A method that does not fit, unknown values.
        (
            vec![
                url,
                id,
                secret,
                ("MCP_INTROSPECTION_CLIENT_AUTH", "private_key_jwt"),
            ],
            "MCP_INTROSPECTION_CLIENT_AUTH",
        ),
        (
            vec![
                url,
                id,
                key,
                ("MCP_INTROSPECTION_CLIENT_AUTH", "client_secret_basic"),
            ],
            "MCP_INTROSPECTION_CLIENT_AUTH",
        ),
        (
            vec![url, id, secret, ("MCP_INTROSPECTION_CLIENT_AUTH", "none")],
            "MCP_INTROSPECTION_CLIENT_AUTH",
        ),
        (
            vec![url, id, secret, ("MCP_INTROSPECTION_FAIL_MODE", "open")],
            "MCP_INTROSPECTION_FAIL_MODE",
        ),
        (
            vec![
                url,
                id,
                secret,
                ("MCP_INTROSPECTION_CACHE_TTL_SECONDS", "3601"),
            ],
            "MCP_INTROSPECTION_CACHE_TTL_SECONDS",
        ),
        (
            vec![("MCP_INTROSPECTION_URL", "idp.example.com"), id, secret],
            "MCP_INTROSPECTION_URL",
        ),
    ] {
        assert_eq!(setting(&vars), name, "{vars:?}");
    }
    // Production: https only.
    let production = [
        ("MCP_ENVIRONMENT", "production"),
        ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ("MCP_INTROSPECTION_URL", "http://idp.example.com/introspect"),
        id,
        secret,
    ];
    assert_eq!(setting(&production), "MCP_INTROSPECTION_URL");
}

#[test]
fn token_exchange_settings_are_all_or_nothing_as_introspections_are() {
    let url = ("MCP_TOKEN_EXCHANGE_URL", "https://idp.example.com/token");
    let id = ("MCP_TOKEN_EXCHANGE_CLIENT_ID", "gateway");
    let secret = ("MCP_TOKEN_EXCHANGE_CLIENT_SECRET", "s3cret-of-the-gateway");
    let config = load(&[url, id, secret]).unwrap();
    assert_eq!(
        config.token_exchange_url.as_deref(),
        Some("https://idp.example.com/token")
    );
    assert_eq!(
        config.token_exchange_client_auth.as_deref(),
        Some("client_secret_basic")
    );
    assert!(config.introspection_url.is_none());
    assert!(!config.redacted_json().to_string().contains("s3cret"));
    let key = ("MCP_TOKEN_EXCHANGE_CLIENT_KEY_FILE", "Cargo.toml");
    let config = load(&[url, id, key]).unwrap();
    assert_eq!(
        config.token_exchange_client_auth.as_deref(),
        Some("private_key_jwt")
    );
    for (vars, name) in [
        (vec![id], "MCP_TOKEN_EXCHANGE_CLIENT_ID"),
        (vec![key], "MCP_TOKEN_EXCHANGE_CLIENT_KEY_FILE"),
        (vec![url, secret], "MCP_TOKEN_EXCHANGE_CLIENT_ID"),
        (vec![url, id], "MCP_TOKEN_EXCHANGE_CLIENT_SECRET"),
        (
            vec![url, id, secret, key],
            "MCP_TOKEN_EXCHANGE_CLIENT_KEY_FILE",
        ),
        (
            vec![
                url,
                id,
                secret,
                ("MCP_TOKEN_EXCHANGE_CLIENT_AUTH", "private_key_jwt"),
            ],
            "MCP_TOKEN_EXCHANGE_CLIENT_AUTH",
        ),
        (
            vec![url, id, secret, ("MCP_TOKEN_EXCHANGE_CLIENT_AUTH", "none")],
            "MCP_TOKEN_EXCHANGE_CLIENT_AUTH",
        ),
        (
            vec![
                ("MCP_TOKEN_EXCHANGE_URL", "ftp://idp.example.com/token"),
                id,
                secret,
            ],
            "MCP_TOKEN_EXCHANGE_URL",
        ),
    ] {
        let error = load(&vars).unwrap_err();
        assert_eq!(error.setting(), name, "{vars:?}: {error}");
    }
}
