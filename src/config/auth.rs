//! Authentication settings: the auth mode, JWT keys and claims, API keys,
//! tool scopes and the OAuth metadata.

use std::fmt;

use super::WardenConfig;
use super::value::{boolean, list, path, url, whole};
use super::vars::Vars;
use crate::error::ConfigError;
use crate::tool_rules::parse_tool_scopes;

/// How callers authenticate (`MCP_AUTH_MODE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMode {
    /// No authentication. Allowed only in
    /// [`Environment::Development`](super::Environment::Development).
    None,
    /// JSON Web Tokens (`Authorization: Bearer`). The default.
    #[default]
    Jwt,
    /// API keys (`X-API-Key`, or a bearer value).
    ApiKey,
    /// Either a JWT or an API key.
    Both,
}

impl AuthMode {
    /// Whether JWTs are accepted.
    #[must_use]
    pub const fn jwt(self) -> bool {
        matches!(self, Self::Jwt | Self::Both)
    }

    /// Whether API keys are accepted.
    #[must_use]
    pub const fn api_key(self) -> bool {
        matches!(self, Self::ApiKey | Self::Both)
    }
}

impl AuthMode {
    /// The canonical name, e.g. `none`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Both => "both",
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether sender-constrained (DPoP, RFC 9449) access tokens are
/// accepted or required (`MCP_DPOP`).
///
/// Whatever the mode, a token bound to a DPoP key (`cnf.jkt`) is never
/// accepted as a plain bearer token, and a token bound to a client
/// certificate (`cnf.x5t#S256`, RFC 8705) only with that certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DpopMode {
    /// `Authorization: DPoP` is refused; plain bearer tokens are accepted,
    /// DPoP-bound ones are not (they need a proof this mode never checks).
    Off,
    /// Both: plain bearer tokens, and DPoP-bound tokens with a valid proof.
    /// The default.
    #[default]
    Allowed,
    /// Only DPoP-bound tokens with a valid proof; plain bearer tokens and
    /// API keys are refused.
    Required,
}

impl DpopMode {
    /// The canonical name, e.g. `allowed`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Allowed => "allowed",
            Self::Required => "required",
        }
    }
}

impl fmt::Display for DpopMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default `MCP_DPOP_MAX_AGE_SECONDS`: how old a DPoP proof's `iat` may be.
pub const DEFAULT_DPOP_MAX_AGE_SECONDS: u64 = 60;

/// Default `MCP_JWT_LEEWAY_SECONDS`.
pub const DEFAULT_JWT_LEEWAY_SECONDS: u64 = 30;
/// Shortest `MCP_JWT_SECRET` accepted outside development, in bytes.
pub const MIN_JWT_SECRET_BYTES: usize = 32;
/// Shortest `MCP_API_KEYS` entry accepted outside development.
pub const MIN_API_KEY_CHARS: usize = 16;
const JWT_ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// `MCP_AUTH_MODE`, which needs `MCP_ENVIRONMENT` read first.
pub(super) fn load_mode(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
    if let Some(mode) = vars.get("MCP_AUTH_MODE") {
        config.auth_mode = match mode.to_ascii_lowercase().as_str() {
            "none" => AuthMode::None,
            "jwt" => AuthMode::Jwt,
            "api_key" | "api-key" | "apikey" => AuthMode::ApiKey,
            "both" => AuthMode::Both,
            _ => {
                return Err(ConfigError::new(
                    "MCP_AUTH_MODE",
                    format!("`{mode}` is not one of none, jwt, api_key, both"),
                ));
            }
        };
    }
    if config.auth_mode == AuthMode::None && config.environment.follows_production_rules() {
        return Err(ConfigError::new(
            "MCP_AUTH_MODE",
            format!(
                "`none` is allowed only when MCP_ENVIRONMENT=development, not {}",
                config.environment
            ),
        ));
    }
    Ok(())
}

/// Keys, claims and API keys.
pub(super) fn load(vars: &Vars, config: &mut WardenConfig) -> Result<(), ConfigError> {
    let production = config.environment.follows_production_rules();
    config.jwt_secret = vars.get("MCP_JWT_SECRET").map(str::to_owned);
    config.jwt_public_key_file = path(vars, "MCP_JWT_PUBLIC_KEY_FILE")?;
    config.jwks_file = path(vars, "MCP_JWKS_FILE")?;
    config.jwks_url = vars
        .get("MCP_JWKS_URL")
        .map(|u| url("MCP_JWKS_URL", u, production))
        .transpose()?;
    config.api_keys_file = path(vars, "MCP_API_KEYS_FILE")?;
    config.api_key_salt = vars.get("MCP_API_KEY_SALT").map(str::to_owned);
    config.api_keys = list(vars, "MCP_API_KEYS")?.unwrap_or_default();
    config.jwt_issuers = list(vars, "MCP_JWT_ISSUER")?.unwrap_or_default();
    config.jwt_audiences = list(vars, "MCP_JWT_AUDIENCE")?.unwrap_or_default();
    // Keys from an identity provider's URL verify only that provider's tokens.
    if production && config.jwks_url.is_some() && config.jwt_issuers.is_empty() {
        return Err(ConfigError::new(
            "MCP_JWT_ISSUER",
            "MCP_JWKS_URL needs MCP_JWT_ISSUER (the accepted `iss`) outside development",
        ));
    }
    load_introspection(vars, config, production)?;
    load_token_exchange(vars, config, production)?;
    config.ws_allow_query_auth = boolean(vars, "MCP_WS_ALLOW_QUERY_AUTH")?.unwrap_or(false);
    if let Some(text) = vars.get("MCP_JWT_LEEWAY_SECONDS") {
        config.jwt_leeway_seconds = text.parse().ok().filter(|s| *s <= 300).ok_or_else(|| {
            ConfigError::new(
                "MCP_JWT_LEEWAY_SECONDS",
                format!("`{text}` is not a whole number of seconds from 0 to 300"),
            )
        })?;
    }
    // Read as given: a blank value is an error, not the default (a
    // security mode is never chosen by accident).
    if let Some(mode) = vars.raw("MCP_DPOP") {
        config.dpop = match mode.trim().to_ascii_lowercase().as_str() {
            "off" => DpopMode::Off,
            "allowed" => DpopMode::Allowed,
            "required" => DpopMode::Required,
            _ => {
                return Err(ConfigError::new(
                    "MCP_DPOP",
                    format!("`{mode}` is not one of off, allowed, required"),
                ));
            }
        };
    }
    if config.dpop == DpopMode::Required && config.auth_mode.api_key() {
        return Err(ConfigError::new(
            "MCP_DPOP",
            format!(
                "`required` accepts only DPoP-bound tokens, but MCP_AUTH_MODE={} accepts API keys, which cannot be bound to a key",
                config.auth_mode
            ),
        ));
    }
    if let Some(text) = vars.get("MCP_DPOP_MAX_AGE_SECONDS") {
        config.dpop_max_age_seconds = text
            .parse()
            .ok()
            .filter(|s| (1..=300).contains(s))
            .ok_or_else(|| {
                ConfigError::new(
                    "MCP_DPOP_MAX_AGE_SECONDS",
                    format!("`{text}` is not a whole number of seconds from 1 to 300"),
                )
            })?;
    }
    if let Some(text) = vars.get("MCP_RESOURCE_URL") {
        config.resource_url = Some(url("MCP_RESOURCE_URL", text, production)?);
    }
    if let Some(text) = vars.get("MCP_TOOL_SCOPES") {
        config.tool_scopes = parse_tool_scopes(text)?;
    }

    // Which key source, and which algorithm.
    let sources = [
        ("MCP_JWT_SECRET", config.jwt_secret.is_some()),
        (
            "MCP_JWT_PUBLIC_KEY_FILE",
            config.jwt_public_key_file.is_some(),
        ),
        ("MCP_JWKS_FILE", config.jwks_file.is_some()),
        ("MCP_JWKS_URL", config.jwks_url.is_some()),
    ];
    let named: Vec<&str> = sources.iter().filter(|s| s.1).map(|s| s.0).collect();
    if named.len() > 1 {
        return Err(ConfigError::new(
            named[1],
            format!("set only one JWT key source, not {}", named.join(" and ")),
        ));
    }
    if let Some(alg) = vars.get("MCP_JWT_ALGORITHM") {
        let canonical = JWT_ALGORITHMS
            .iter()
            .find(|a| a.eq_ignore_ascii_case(alg))
            .ok_or_else(|| {
                ConfigError::new(
                    "MCP_JWT_ALGORITHM",
                    format!("`{alg}` is not one of {}", JWT_ALGORITHMS.join(", ")),
                )
            })?;
        config.jwt_algorithm = Some((*canonical).to_owned());
    }
    let hmac = config
        .jwt_algorithm
        .as_deref()
        .is_none_or(|a| a.starts_with("HS"));
    if config.jwt_secret.is_some() && !hmac {
        return Err(ConfigError::new(
            "MCP_JWT_ALGORITHM",
            "MCP_JWT_SECRET signs HS256, HS384 or HS512 tokens only",
        ));
    }
    if config.jwt_public_key_file.is_some() && hmac && config.jwt_algorithm.is_some() {
        return Err(ConfigError::new(
            "MCP_JWT_ALGORITHM",
            "a public key cannot verify HS* tokens (that is the algorithm-confusion attack)",
        ));
    }
    if config.auth_mode.jwt() {
        if let Some(secret) = &config.jwt_secret {
            if production && secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(ConfigError::new(
                    "MCP_JWT_SECRET",
                    format!(
                        "is {} bytes; at least {MIN_JWT_SECRET_BYTES} are required outside development",
                        secret.len()
                    ),
                ));
            }
        } else if named.is_empty() && production {
            return Err(ConfigError::new(
                "MCP_JWT_SECRET",
                "MCP_AUTH_MODE needs JWT keys: set MCP_JWT_SECRET, MCP_JWT_PUBLIC_KEY_FILE, MCP_JWKS_FILE or MCP_JWKS_URL",
            ));
        }
    }
    if let Some(salt) = config.api_key_salt.as_ref().filter(|s| s.len() < 16) {
        return Err(ConfigError::new(
            "MCP_API_KEY_SALT",
            format!("is {} bytes; at least 16 are required", salt.len()),
        ));
    }
    if config.api_keys_file.is_some() && config.api_key_salt.is_none() {
        return Err(ConfigError::new(
            "MCP_API_KEY_SALT",
            "MCP_API_KEYS_FILE holds salted digests: set the salt they were made with",
        ));
    }
    if config.auth_mode.api_key() {
        if config.api_keys.is_empty() && config.api_keys_file.is_none() {
            return Err(ConfigError::new(
                "MCP_API_KEYS",
                format!(
                    "MCP_AUTH_MODE={} needs MCP_API_KEYS or MCP_API_KEYS_FILE",
                    config.auth_mode
                ),
            ));
        }
        if production
            && config
                .api_keys
                .iter()
                .any(|k| k.chars().count() < MIN_API_KEY_CHARS)
        {
            return Err(ConfigError::new(
                "MCP_API_KEYS",
                format!(
                    "every key needs at least {MIN_API_KEY_CHARS} characters outside development"
                ),
            ));
        }
    }
    Ok(())
}

/// The settings of one OAuth client of the authorization server
/// (`<PREFIX>_URL`, `_CLIENT_ID`, `_CLIENT_SECRET`, `_CLIENT_KEY_FILE`,
/// `_CLIENT_AUTH`).
struct ClientNames {
    url: &'static str,
    client_id: &'static str,
    client_secret: &'static str,
    client_key_file: &'static str,
    client_auth: &'static str,
}

const INTROSPECTION: ClientNames = ClientNames {
    url: "MCP_INTROSPECTION_URL",
    client_id: "MCP_INTROSPECTION_CLIENT_ID",
    client_secret: "MCP_INTROSPECTION_CLIENT_SECRET",
    client_key_file: "MCP_INTROSPECTION_CLIENT_KEY_FILE",
    client_auth: "MCP_INTROSPECTION_CLIENT_AUTH",
};

const TOKEN_EXCHANGE: ClientNames = ClientNames {
    url: "MCP_TOKEN_EXCHANGE_URL",
    client_id: "MCP_TOKEN_EXCHANGE_CLIENT_ID",
    client_secret: "MCP_TOKEN_EXCHANGE_CLIENT_SECRET",
    client_key_file: "MCP_TOKEN_EXCHANGE_CLIENT_KEY_FILE",
    client_auth: "MCP_TOKEN_EXCHANGE_CLIENT_AUTH",
};

/// One OAuth client, as its settings gave it.
#[derive(Default)]
struct ClientSettings {
    url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_key_file: Option<std::path::PathBuf>,
    /// Decided from the credential given when not set.
    client_auth: Option<String>,
}

/// One OAuth client's settings, all or nothing. With a URL: a client id
/// and exactly one of a secret and a key file, and a client
/// authentication that fits it; without one, none of the others — nor of
/// `more`, the settings that only mean something with the URL (set for
/// nothing is an error, not a silent no-op).
fn load_client(
    vars: &Vars,
    names: &ClientNames,
    more: &[&'static str],
    production: bool,
) -> Result<ClientSettings, ConfigError> {
    let mut client = ClientSettings {
        url: vars
            .get(names.url)
            .map(|u| url(names.url, u, production))
            .transpose()?,
        client_id: vars.get(names.client_id).map(str::to_owned),
        client_secret: vars.get(names.client_secret).map(str::to_owned),
        client_key_file: path(vars, names.client_key_file)?,
        client_auth: None,
    };
    let auth = vars.raw(names.client_auth).map(str::trim);
    if let Some(auth) = auth
        && !matches!(
            auth,
            "client_secret_basic" | "client_secret_post" | "private_key_jwt"
        )
    {
        return Err(ConfigError::new(
            names.client_auth,
            format!(
                "`{auth}` is not one of client_secret_basic, client_secret_post, private_key_jwt"
            ),
        ));
    }
    if client.url.is_none() {
        let set = [
            (names.client_id, client.client_id.is_some()),
            (names.client_secret, client.client_secret.is_some()),
            (names.client_key_file, client.client_key_file.is_some()),
            (names.client_auth, auth.is_some()),
        ]
        .into_iter()
        .chain(more.iter().map(|name| (*name, vars.raw(name).is_some())));
        if let Some((name, _)) = set.into_iter().find(|(_, set)| *set) {
            return Err(ConfigError::new(
                name,
                format!("is set, but {} is not", names.url),
            ));
        }
        return Ok(client);
    }
    if client.client_id.as_deref().is_none_or(str::is_empty) {
        return Err(ConfigError::new(
            names.client_id,
            format!("{} needs this server's client id", names.url),
        ));
    }
    let auth = match (&client.client_secret, &client.client_key_file, auth) {
        (Some(_), Some(_), _) => {
            return Err(ConfigError::new(
                names.client_key_file,
                format!("set either {} or a key file, not both", names.client_secret),
            ));
        }
        (None, None, _) => {
            return Err(ConfigError::new(
                names.client_secret,
                format!(
                    "{} needs a client secret or {}",
                    names.url, names.client_key_file
                ),
            ));
        }
        (Some(_), None, None | Some("client_secret_basic")) => "client_secret_basic",
        (Some(_), None, Some("client_secret_post")) => "client_secret_post",
        (None, Some(_), None | Some("private_key_jwt")) => "private_key_jwt",
        (_, _, Some(other)) => {
            return Err(ConfigError::new(
                names.client_auth,
                format!("`{other}` does not fit the credential given (a secret or a key file)"),
            ));
        }
    };
    client.client_auth = Some(auth.to_owned());
    Ok(client)
}

/// `MCP_INTROSPECTION_*` (see [`load_client`]), its cache TTL and fail
/// mode.
fn load_introspection(
    vars: &Vars,
    config: &mut WardenConfig,
    production: bool,
) -> Result<(), ConfigError> {
    let client = load_client(
        vars,
        &INTROSPECTION,
        &[
            "MCP_INTROSPECTION_CACHE_TTL_SECONDS",
            "MCP_INTROSPECTION_FAIL_MODE",
        ],
        production,
    )?;
    config.introspection_url = client.url;
    config.introspection_client_id = client.client_id;
    config.introspection_client_secret = client.client_secret;
    config.introspection_client_key_file = client.client_key_file;
    config.introspection_client_auth = client.client_auth;
    if let Some(ttl) = whole(vars, "MCP_INTROSPECTION_CACHE_TTL_SECONDS", 0, 3600)? {
        config.introspection_cache_ttl_seconds = ttl;
    }
    if let Some(mode) = vars.raw("MCP_INTROSPECTION_FAIL_MODE").map(str::trim) {
        if !matches!(mode, "closed" | "cached") {
            return Err(ConfigError::new(
                "MCP_INTROSPECTION_FAIL_MODE",
                format!("`{mode}` is not one of closed, cached"),
            ));
        }
        config.introspection_fail_mode = mode.to_owned();
    }
    Ok(())
}

/// `MCP_TOKEN_EXCHANGE_*` (see [`load_client`]).
fn load_token_exchange(
    vars: &Vars,
    config: &mut WardenConfig,
    production: bool,
) -> Result<(), ConfigError> {
    let client = load_client(vars, &TOKEN_EXCHANGE, &[], production)?;
    config.token_exchange_url = client.url;
    config.token_exchange_client_id = client.client_id;
    config.token_exchange_client_secret = client.client_secret;
    config.token_exchange_client_key_file = client.client_key_file;
    config.token_exchange_client_auth = client.client_auth;
    Ok(())
}
