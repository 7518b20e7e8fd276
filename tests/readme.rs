//! The README stays true: its two commands are the ones CI runs, and every
//! environment variable the configuration reads is documented in it.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/mcp_server/settings.rs"]
mod server_settings;

const README: &str = include_str!("../README.md");

/// Every variable read: the perimeter's and the reference server's own.
fn known(name: &str) -> bool {
    tower_warden::config::VARIABLES.contains(&name)
        || server_settings::NAMES.contains(&name)
        || tower_warden::otel::VARIABLES.contains(&name)
}
const CI: &str = include_str!("../.ci/run");

#[test]
fn readme_opens_with_the_two_commands_and_ci_runs_the_test_command() {
    let first_block: Vec<&str> = README
        .split("```sh")
        .nth(1)
        .expect("a shell block")
        .split("```")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(first_block[0].starts_with("cargo run --example mcp_server"));
    assert!(first_block[1].starts_with("cargo test --all-features"));
    assert!(
        CI.lines().any(|l| l.trim() == "cargo test --all-features"),
        ".ci/run must run the README's test command"
    );
}

#[test]
fn readme_documents_every_configuration_variable() {
    let all = tower_warden::config::VARIABLES
        .iter()
        .chain(server_settings::NAMES);
    for name in all {
        assert!(
            README.contains(&format!("| `{name}` |")),
            "README.md has no table row for {name}"
        );
    }
}

/// The rows of the README's configuration table (`| `NAME` | ...`).
fn documented_variables() -> Vec<&'static str> {
    README
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split_once("` |"))
        .map(|(name, _)| name)
        .filter(|name| {
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect()
}

#[test]
fn readme_documents_no_variable_the_configuration_does_not_read() {
    let documented = documented_variables();
    assert!(
        documented.len() >= tower_warden::config::VARIABLES.len() + server_settings::NAMES.len()
    );
    for name in documented {
        assert!(
            known(name),
            "README.md documents {name}, which the configuration does not read"
        );
    }
}

mod deploy {
    use tower_warden::config::{Environment, Source, WardenConfig};

    use super::server_settings::NAMES;

    const TOML: &str = include_str!("../examples/deploy/mcp.toml");
    const ENV: &str = include_str!("../examples/deploy/mcp.env");
    const NGINX: &str = include_str!("../examples/deploy/nginx-mcp.conf");
    const UNIT: &str = include_str!("../examples/deploy/tower-warden-mcp.service");

    fn config() -> WardenConfig {
        Source::from_toml(TOML, NAMES)
            .and_then(|source| source.warden())
            .expect("the example settings load")
    }

    /// The value of an nginx `proxy_set_header NAME VALUE;`.
    fn proxy_header(name: &str) -> &'static str {
        NGINX
            .lines()
            .filter_map(|l| l.trim().strip_prefix("proxy_set_header "))
            .find_map(|l| {
                let (header, value) = l.split_once(char::is_whitespace)?;
                header
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().trim_end_matches(';'))
            })
            .unwrap_or_else(|| panic!("nginx-mcp.conf sets no {name}"))
    }

    #[test]
    fn the_example_settings_are_valid_production_settings() {
        let config = config();
        assert_eq!(config.environment, Environment::Production);
        assert!(config.client_cert_required && config.trust_x_forwarded);
    }

    #[test]
    fn nginx_sets_exactly_the_headers_the_server_trusts() {
        let config = config();
        // The certificate verdict, overwritten by nginx with its own.
        assert_eq!(
            proxy_header(&config.client_cert_header),
            "$ssl_client_verify"
        );
        assert_eq!(config.client_cert_header_value, "SUCCESS");
        // The client address appended last, read at depth 1.
        assert_eq!(
            proxy_header("X-Forwarded-For"),
            "$proxy_add_x_forwarded_for"
        );
        assert_eq!(config.trusted_proxy_depth, 1);
        let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        assert!(config.trusted_proxies.iter().any(|n| n.contains(&loopback)));
        // nginx forwards to where the server listens.
        let upstream = format!("server {}:{};", config.host, config.port);
        assert!(
            NGINX.contains(&upstream),
            "nginx-mcp.conf lacks `{upstream}`"
        );
        // The public host is the one the server answers for.
        assert!(
            config
                .allowed_hosts
                .iter()
                .all(|h| NGINX.contains(h.as_str()))
        );
        assert!(
            config
                .resource_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
        );
    }

    #[test]
    fn the_unit_waits_longer_than_a_request_may_take() {
        let config = config();
        let stop: u64 = UNIT
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .expect("TimeoutStopSec")
            .trim()
            .parse()
            .unwrap();
        assert!(stop > config.request_timeout.as_secs());
        assert!(UNIT.contains("KillSignal=SIGTERM"));
        // The unit reads the env file, which names the settings file.
        assert!(UNIT.contains("EnvironmentFile=/etc/tower-warden/mcp.env"));
        assert!(ENV.contains("MCP_CONFIG_FILE=/etc/tower-warden/mcp.toml"));
        // Paths the server writes are the ones the unit lets it write.
        let server = Source::from_toml(TOML, NAMES)
            .and_then(|source| super::server_settings::Settings::read(&source))
            .expect("the example settings load");
        let audit = server.logs.audit_file.expect("an audit file");
        let writable = UNIT
            .lines()
            .find_map(|l| l.strip_prefix("ReadWritePaths="))
            .expect("ReadWritePaths");
        assert!(
            writable
                .split_whitespace()
                .any(|dir| audit.starts_with(dir)),
            "{} is not writable under the unit",
            audit.display()
        );
    }

    #[test]
    fn the_env_file_names_only_known_variables() {
        for line in ENV.lines() {
            let line = line.trim_start_matches('#');
            if let Some((name, _)) = line.split_once('=')
                && !name.contains(' ')
            {
                assert!(
                    super::known(name),
                    "mcp.env names {name}, which the configuration does not read"
                );
            }
        }
    }
}
