//! Settings from `MCP_*` environment variables, checked once at start-up.
//!
//! [`WardenConfig::from_env`] reads the process environment;
//! [`WardenConfig::from_vars`] reads any list of pairs (for tests, or a
//! file you parsed yourself). Every value is validated here, so a server
//! that starts has usable settings, and a bad value is one
//! [`ConfigError`] naming the variable:
//!
//! ```
//! use tower_warden::config::WardenConfig;
//!
//! let error = WardenConfig::from_vars([("MCP_PORT", "eighty")]).unwrap_err();
//! assert_eq!(error.setting(), "MCP_PORT");
//!
//! let config = WardenConfig::from_vars([
//!     ("MCP_ALLOWED_IPS", r#"["10.0.0.0/8", "192.0.2.7"]"#),
//!     ("MCP_HTTP_MAX_BODY_BYTES", "65536"),
//! ])
//! .unwrap();
//! assert_eq!(config.allowed_ips.len(), 2);
//! assert_eq!(config.max_body_bytes, 65536);
//! ```
//!
//! # Variables
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `MCP_HOST` | `127.0.0.1` | address or name to listen on |
//! | `MCP_PORT` | `8000` | port to listen on (0–65535) |
//! | `MCP_ENVIRONMENT` | `development` | `development`, `staging` or `production` (`dev`, `stage`, `prod` too) |
//! | `MCP_AUTH_MODE` | `none` | `none` (no authentication); allowed only in `development` |
//! | `MCP_ALLOWED_IPS` | empty (all) | addresses / CIDRs allowed to connect |
//! | `MCP_BLOCKED_IPS` | empty | addresses / CIDRs refused |
//! | `MCP_TRUST_X_FORWARDED` | `false` | read `X-Forwarded-For` from trusted proxies; needs `MCP_TRUSTED_PROXIES` |
//! | `MCP_TRUSTED_PROXIES` | empty | addresses / CIDRs of the proxies in front of the server |
//! | `MCP_TRUSTED_PROXY_DEPTH` | `1` | proxies that append to `X-Forwarded-For` (1–64) |
//! | `MCP_CLIENT_CERT_REQUIRED` | `false` | require the TLS proxy's client-certificate header; needs `MCP_TRUSTED_PROXIES` |
//! | `MCP_CLIENT_CERT_HEADER` | `X-SSL-Client-Verify` | the header the proxy sets |
//! | `MCP_CLIENT_CERT_HEADER_VALUE` | `SUCCESS` | its value for a verified certificate |
//! | `MCP_HTTP_MAX_BODY_BYTES` (alias `MCP_MAX_REQUEST_SIZE`) | `1048576` | largest request body, in bytes |
//! | `MCP_ALLOWED_ORIGINS` | empty | browser origins allowed besides the server's own host |
//! | `MCP_ALLOWED_HOSTS` | `localhost,127.0.0.1,[::1]` | `Host` values served (any port unless one is given) |
//!
//! Lists are written `a,b` or as a JSON array of strings `["a","b"]`.
//! Booleans are `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off` (any
//! case); anything else is an error. A variable set to the empty string
//! counts as unset. Variables this module does not know are ignored.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::ConfigError;
use crate::net::parse_nets;

/// The deployment environment (`MCP_ENVIRONMENT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Environment {
    /// A developer's machine: insecure conveniences are allowed.
    #[default]
    Development,
    /// A pre-production deployment: held to production rules.
    Staging,
    /// Production.
    Production,
}

impl Environment {
    /// The canonical name: `development`, `staging` or `production`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How callers authenticate (`MCP_AUTH_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMode {
    /// No authentication. Allowed only in [`Environment::Development`].
    #[default]
    None,
}

impl AuthMode {
    /// The canonical name, e.g. `none`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every setting of the security perimeter and the reference server,
/// validated. See the [module docs](self) for the variables.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WardenConfig {
    /// `MCP_HOST`: the address or name to listen on.
    pub host: String,
    /// `MCP_PORT`: the port to listen on.
    pub port: u16,
    /// `MCP_ENVIRONMENT`.
    pub environment: Environment,
    /// `MCP_AUTH_MODE`.
    pub auth_mode: AuthMode,
    /// `MCP_ALLOWED_IPS`: when not empty, only these clients are served.
    pub allowed_ips: Vec<IpNet>,
    /// `MCP_BLOCKED_IPS`: clients that are refused.
    pub blocked_ips: Vec<IpNet>,
    /// `MCP_TRUST_X_FORWARDED`: resolve the client behind
    /// [`trusted_proxies`](Self::trusted_proxies) from `X-Forwarded-For`.
    pub trust_x_forwarded: bool,
    /// `MCP_TRUSTED_PROXIES`.
    pub trusted_proxies: Vec<IpNet>,
    /// `MCP_TRUSTED_PROXY_DEPTH`: the proxies that append to
    /// `X-Forwarded-For`.
    pub trusted_proxy_depth: usize,
    /// `MCP_CLIENT_CERT_REQUIRED`.
    pub client_cert_required: bool,
    /// `MCP_CLIENT_CERT_HEADER`: the header a trusted TLS proxy sets.
    pub client_cert_header: String,
    /// `MCP_CLIENT_CERT_HEADER_VALUE`: its value for a verified certificate.
    pub client_cert_header_value: String,
    /// `MCP_HTTP_MAX_BODY_BYTES` (or `MCP_MAX_REQUEST_SIZE`).
    pub max_body_bytes: u64,
    /// `MCP_ALLOWED_ORIGINS`: browser origins allowed besides the server's
    /// own host.
    pub allowed_origins: Vec<String>,
    /// `MCP_ALLOWED_HOSTS`: the `Host` values this server answers for.
    pub allowed_hosts: Vec<String>,
}

impl fmt::Debug for WardenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The expected certificate header value can act as a shared secret
        // between proxy and server; it is never printed.
        f.debug_struct("WardenConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("environment", &self.environment)
            .field("auth_mode", &self.auth_mode)
            .field("allowed_ips", &self.allowed_ips)
            .field("blocked_ips", &self.blocked_ips)
            .field("trust_x_forwarded", &self.trust_x_forwarded)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("trusted_proxy_depth", &self.trusted_proxy_depth)
            .field("client_cert_required", &self.client_cert_required)
            .field("client_cert_header", &self.client_cert_header)
            .field("client_cert_header_value", &"<redacted>")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

impl Default for WardenConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8000,
            environment: Environment::Development,
            auth_mode: AuthMode::None,
            allowed_ips: Vec::new(),
            blocked_ips: Vec::new(),
            trust_x_forwarded: false,
            trusted_proxies: Vec::new(),
            trusted_proxy_depth: 1,
            client_cert_required: false,
            client_cert_header: DEFAULT_CERT_HEADER.to_owned(),
            client_cert_header_value: DEFAULT_CERT_HEADER_VALUE.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allowed_origins: Vec::new(),
            allowed_hosts: DEFAULT_ALLOWED_HOSTS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
        }
    }
}

/// Default `MCP_HTTP_MAX_BODY_BYTES`: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const DEFAULT_CERT_HEADER: &str = "X-SSL-Client-Verify";
const DEFAULT_CERT_HEADER_VALUE: &str = "SUCCESS";
const DEFAULT_ALLOWED_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];
const MAX_PROXY_DEPTH: usize = 64;

/// Every environment variable [`WardenConfig`] reads.
pub const VARIABLES: [&str; 16] = [
    "MCP_HOST",
    "MCP_PORT",
    "MCP_ENVIRONMENT",
    "MCP_AUTH_MODE",
    "MCP_ALLOWED_IPS",
    "MCP_BLOCKED_IPS",
    "MCP_TRUST_X_FORWARDED",
    "MCP_TRUSTED_PROXIES",
    "MCP_TRUSTED_PROXY_DEPTH",
    "MCP_CLIENT_CERT_REQUIRED",
    "MCP_CLIENT_CERT_HEADER",
    "MCP_CLIENT_CERT_HEADER_VALUE",
    "MCP_HTTP_MAX_BODY_BYTES",
    "MCP_MAX_REQUEST_SIZE",
    "MCP_ALLOWED_ORIGINS",
    "MCP_ALLOWED_HOSTS",
];

struct Vars {
    values: [Option<String>; VARIABLES.len()],
}

impl Vars {
    fn get(&self, name: &'static str) -> Option<&str> {
        let index = VARIABLES.iter().position(|v| *v == name)?;
        self.values[index].as_deref()
    }
}

impl WardenConfig {
    /// Loads the settings from the process environment.
    ///
    /// # Errors
    ///
    /// The first invalid setting, by variable name. A variable whose value
    /// is not UTF-8 is invalid.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut pairs = Vec::new();
        for (key, value) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if !key.starts_with("MCP_") {
                continue;
            }
            let value = value
                .into_string()
                .map_err(|_| ConfigError::new(key.to_owned(), "the value is not valid UTF-8"))?;
            pairs.push((key.to_owned(), value));
        }
        Self::from_vars(pairs)
    }

    /// Loads the settings from `(name, value)` pairs; later pairs win.
    ///
    /// # Errors
    ///
    /// The first invalid setting, by variable name.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut table = Vars {
            values: Default::default(),
        };
        for (key, value) in vars {
            if let Some(index) = VARIABLES.iter().position(|v| *v == key.as_ref()) {
                let value = value.as_ref().trim();
                table.values[index] = (!value.is_empty()).then(|| value.to_owned());
            }
        }
        Self::load(&table)
    }

    fn load(vars: &Vars) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(host) = vars.get("MCP_HOST") {
            if host.parse::<IpAddr>().is_err() && !is_host_name(host) {
                return Err(ConfigError::new(
                    "MCP_HOST",
                    format!("`{host}` is not an IP address or host name"),
                ));
            }
            config.host = host.to_owned();
        }
        if let Some(port) = vars.get("MCP_PORT") {
            config.port = port.parse().map_err(|_| {
                ConfigError::new(
                    "MCP_PORT",
                    format!("`{port}` is not a port number (0-65535)"),
                )
            })?;
        }
        if let Some(env) = vars.get("MCP_ENVIRONMENT") {
            config.environment = match env.to_ascii_lowercase().as_str() {
                "development" | "dev" => Environment::Development,
                "staging" | "stage" => Environment::Staging,
                "production" | "prod" => Environment::Production,
                _ => {
                    return Err(ConfigError::new(
                        "MCP_ENVIRONMENT",
                        format!("`{env}` is not one of development, staging, production"),
                    ));
                }
            };
        }
        if let Some(mode) = vars.get("MCP_AUTH_MODE") {
            config.auth_mode = match mode.to_ascii_lowercase().as_str() {
                "none" => AuthMode::None,
                _ => {
                    return Err(ConfigError::new(
                        "MCP_AUTH_MODE",
                        format!("`{mode}` is not a supported mode (supported: none)"),
                    ));
                }
            };
        }
        if config.auth_mode == AuthMode::None && config.environment != Environment::Development {
            return Err(ConfigError::new(
                "MCP_AUTH_MODE",
                format!(
                    "`none` (the default) is allowed only when MCP_ENVIRONMENT=development, not {}",
                    config.environment
                ),
            ));
        }
        config.allowed_ips = nets(vars, "MCP_ALLOWED_IPS")?;
        config.blocked_ips = nets(vars, "MCP_BLOCKED_IPS")?;
        config.trusted_proxies = nets(vars, "MCP_TRUSTED_PROXIES")?;
        config.trust_x_forwarded = boolean(vars, "MCP_TRUST_X_FORWARDED")?.unwrap_or(false);
        if let Some(depth) = vars.get("MCP_TRUSTED_PROXY_DEPTH") {
            config.trusted_proxy_depth = depth
                .parse()
                .ok()
                .filter(|d| (1..=MAX_PROXY_DEPTH).contains(d))
                .ok_or_else(|| {
                    ConfigError::new(
                        "MCP_TRUSTED_PROXY_DEPTH",
                        format!("`{depth}` is not a whole number from 1 to {MAX_PROXY_DEPTH}"),
                    )
                })?;
        }
        if config.trust_x_forwarded && config.trusted_proxies.is_empty() {
            return Err(ConfigError::new(
                "MCP_TRUST_X_FORWARDED",
                "is true but MCP_TRUSTED_PROXIES is empty: name the proxies whose X-Forwarded-For may be believed",
            ));
        }
        config.client_cert_required = boolean(vars, "MCP_CLIENT_CERT_REQUIRED")?.unwrap_or(false);
        if let Some(header) = vars.get("MCP_CLIENT_CERT_HEADER") {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(ConfigError::new(
                    "MCP_CLIENT_CERT_HEADER",
                    format!("`{header}` is not a valid HTTP header name"),
                ));
            }
            config.client_cert_header = header.to_owned();
        }
        if let Some(value) = vars.get("MCP_CLIENT_CERT_HEADER_VALUE") {
            if http::HeaderValue::from_str(value).is_err() {
                return Err(ConfigError::new(
                    "MCP_CLIENT_CERT_HEADER_VALUE",
                    "is not a valid HTTP header value",
                ));
            }
            config.client_cert_header_value = value.to_owned();
        }
        if config.client_cert_required && config.trusted_proxies.is_empty() {
            return Err(ConfigError::new(
                "MCP_CLIENT_CERT_REQUIRED",
                "is true but MCP_TRUSTED_PROXIES is empty: the certificate header is believed only from a trusted proxy",
            ));
        }
        config.max_body_bytes = body_limit(vars)?;
        if let Some(origins) = list(vars, "MCP_ALLOWED_ORIGINS")? {
            #[cfg(feature = "mcp")]
            for origin in &origins {
                crate::mcp::validate_allowed_origin(origin)
                    .map_err(|e| e.for_setting("MCP_ALLOWED_ORIGINS"))?;
            }
            config.allowed_origins = origins;
        }
        if let Some(hosts) = list(vars, "MCP_ALLOWED_HOSTS")? {
            #[cfg(feature = "mcp")]
            for host in &hosts {
                crate::mcp::validate_allowed_host(host)
                    .map_err(|e| e.for_setting("MCP_ALLOWED_HOSTS"))?;
            }
            if hosts.is_empty() {
                return Err(ConfigError::new(
                    "MCP_ALLOWED_HOSTS",
                    "is an empty list: the server would answer no request",
                ));
            }
            config.allowed_hosts = hosts;
        }
        Ok(config)
    }
}

fn body_limit(vars: &Vars) -> Result<u64, ConfigError> {
    let parse = |name: &'static str, text: &str| {
        text.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ConfigError::new(name, format!("`{text}` is not a positive number of bytes"))
        })
    };
    let primary = vars
        .get("MCP_HTTP_MAX_BODY_BYTES")
        .map(|t| parse("MCP_HTTP_MAX_BODY_BYTES", t))
        .transpose()?;
    let alias = vars
        .get("MCP_MAX_REQUEST_SIZE")
        .map(|t| parse("MCP_MAX_REQUEST_SIZE", t))
        .transpose()?;
    match (primary, alias) {
        (Some(a), Some(b)) if a != b => Err(ConfigError::new(
            "MCP_HTTP_MAX_BODY_BYTES",
            format!("is {a} but its alias MCP_MAX_REQUEST_SIZE is {b}; set one of them"),
        )),
        (Some(n), _) | (None, Some(n)) => Ok(n),
        (None, None) => Ok(DEFAULT_MAX_BODY_BYTES),
    }
}

/// An RFC 1123 host name (letters, digits, `-`, dots).
fn is_host_name(text: &str) -> bool {
    text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn boolean(vars: &Vars, name: &'static str) -> Result<Option<bool>, ConfigError> {
    let Some(text) = vars.get(name) else {
        return Ok(None);
    };
    match text.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        _ => Err(ConfigError::new(
            name,
            format!("`{text}` is not a boolean (true/false, 1/0, yes/no, on/off)"),
        )),
    }
}

fn nets(vars: &Vars, name: &'static str) -> Result<Vec<IpNet>, ConfigError> {
    parse_nets(name, list(vars, name)?.unwrap_or_default())
}

fn list(vars: &Vars, name: &'static str) -> Result<Option<Vec<String>>, ConfigError> {
    vars.get(name)
        .map(|text| parse_list(text).map_err(|message| ConfigError::new(name, message)))
        .transpose()
}

/// `a, b` or a JSON array of strings `["a", "b"]`; blank entries are
/// dropped.
pub(crate) fn parse_list(text: &str) -> Result<Vec<String>, String> {
    let text = text.trim();
    let items = if text.starts_with('[') {
        parse_json_strings(text)?
    } else {
        text.split(',').map(str::to_owned).collect()
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

/// A JSON array whose elements are all strings.
fn parse_json_strings(text: &str) -> Result<Vec<String>, String> {
    const NOT_AN_ARRAY: &str = "starts with `[` but is not a JSON array of strings";
    let mut chars = text.chars().peekable();
    let mut out = Vec::new();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars
            .next_if(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
            .is_some()
        {}
    };
    if chars.next() != Some('[') {
        return Err(NOT_AN_ARRAY.to_owned());
    }
    skip_ws(&mut chars);
    if chars.next_if_eq(&']').is_none() {
        loop {
            skip_ws(&mut chars);
            if chars.next() != Some('"') {
                return Err(NOT_AN_ARRAY.to_owned());
            }
            out.push(json_string_rest(&mut chars).ok_or(NOT_AN_ARRAY)?);
            skip_ws(&mut chars);
            match chars.next() {
                Some(',') => continue,
                Some(']') => break,
                _ => return Err(NOT_AN_ARRAY.to_owned()),
            }
        }
    }
    skip_ws(&mut chars);
    if chars.next().is_some() {
        return Err(NOT_AN_ARRAY.to_owned());
    }
    Ok(out)
}

/// The rest of a JSON string after its opening quote, unescaped.
fn json_string_rest(chars: &mut impl Iterator<Item = char>) -> Option<String> {
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                '/' => out.push('/'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let high = hex4(chars)?;
                    let c = if (0xD800..0xDC00).contains(&high) {
                        if chars.next()? != '\\' || chars.next()? != 'u' {
                            return None;
                        }
                        let low = hex4(chars)?;
                        if !(0xDC00..0xE000).contains(&low) {
                            return None;
                        }
                        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?
                    } else {
                        char::from_u32(high)?
                    };
                    out.push(c);
                }
                _ => return None,
            },
            c if (c as u32) < 0x20 => return None,
            c => out.push(c),
        }
    }
}

fn hex4(chars: &mut impl Iterator<Item = char>) -> Option<u32> {
    let mut value = 0;
    for _ in 0..4 {
        value = value * 16 + chars.next()?.to_digit(16)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(config.auth_mode, AuthMode::None);
        assert_eq!(config.max_body_bytes, 1_048_576);
        assert_eq!(config.allowed_hosts, ["localhost", "127.0.0.1", "[::1]"]);
        assert!(config.allowed_origins.is_empty());
        assert_eq!(config.client_cert_header, "X-SSL-Client-Verify");
        assert_eq!(config.client_cert_header_value, "SUCCESS");
        assert_eq!(config.trusted_proxy_depth, 1);
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
    fn auth_mode_none_is_for_development_only() {
        for env in ["production", "PROD", "staging"] {
            assert_eq!(setting(&[("MCP_ENVIRONMENT", env)]), "MCP_AUTH_MODE");
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
}
