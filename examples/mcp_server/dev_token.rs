//! The development token: in development, with JWT authentication and no
//! key configured, the server makes an ephemeral secret and a token for it
//! that the operator can paste into a client. Never in production: there a
//! missing key is a start-up error.

use tower_warden::ConfigError;
use tower_warden::config::WardenConfig;

/// The seconds a development token stays valid.
const DEV_TOKEN_SECONDS: u64 = 24 * 3600;

/// An ephemeral secret and a token signed with it.
pub struct DevToken {
    /// The secret (hex), for the perimeter's `MCP_JWT_SECRET`.
    pub secret: String,
    /// The token: every scope, the admin role, the `default` namespace,
    /// valid 24 h, for the audience `audience`.
    pub token: String,
    /// The audience the token names (the MCP endpoint).
    pub audience: String,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The development token `config` calls for, with the role `admin_role`
/// (`MCP_ADMIN_ROLE`): `None` unless JWTs are accepted, no key source is
/// configured, and the environment is development.
///
/// # Errors
///
/// No random source, or the token cannot be signed (`MCP_JWT_SECRET`).
pub fn needed(config: &WardenConfig, admin_role: &str) -> Result<Option<DevToken>, ConfigError> {
    let has_key_source = config.jwt_secret.is_some()
        || config.jwt_public_key_file.is_some()
        || config.jwks_file.is_some()
        || config.jwks_url.is_some();
    if !config.auth_mode.jwt() || has_key_source || config.environment.follows_production_rules() {
        return Ok(None);
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| {
        ConfigError::new(
            "MCP_JWT_SECRET",
            format!("no random source for an ephemeral secret: {e}"),
        )
    })?;
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let audience = tower_warden::stack::resource_url(config);
    let iat = now();
    let claims = serde_json::json!({
        "sub": "developer",
        "scope": "*",
        "roles": [admin_role],
        "namespace": "default",
        "aud": audience,
        "iat": iat,
        "exp": iat + DEV_TOKEN_SECONDS,
    });
    tower_warden::auth::install_crypto_provider();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| {
        ConfigError::new(
            "MCP_JWT_SECRET",
            format!("cannot sign the development token: {e}"),
        )
    })?;
    Ok(Some(DevToken {
        secret,
        token,
        audience,
    }))
}

/// The start-up warning that goes with a development token.
pub const WARNING: &str = "no JWT key configured: using an ephemeral development secret (set MCP_JWT_SECRET to keep tokens across restarts)";

/// Prints `token` for `resource_url` on standard error, on purpose outside
/// the logs: it is the development credential.
pub fn print(token: &str, resource_url: &str) {
    eprintln!(
        "\nDevelopment token for {resource_url} (valid 24 h, every scope; ephemeral, NOT for production):\n\n  Authorization: Bearer {token}\n"
    );
}
