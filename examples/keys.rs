//! Mints credentials for the reference server.
//!
//! ```text
//! MCP_API_KEY_SALT=... cargo run --example keys -- api-key --id ci-bot --namespace acme --scopes "tools:*" --roles reader
//! MCP_JWT_SECRET=...   cargo run --example keys -- token --sub alice --scopes "tools:echo" --ttl 3600 --aud http://127.0.0.1:8000/mcp
//! ```
//!
//! `api-key` prints a new random key (give it to the client; it is shown
//! once) and the line to append to `MCP_API_KEYS_FILE`, which holds only its
//! salted digest. `token` prints an HS256 token signed with `MCP_JWT_SECRET`.
//! Both read the settings as the server does (`MCP_*` variables and
//! `MCP_CONFIG_FILE`), so a salt or secret the server would refuse is refused
//! here too.

use std::process::ExitCode;

use base64::Engine as _;
use tower_warden::auth::ApiKeys;
use tower_warden::config::WardenConfig;

fn usage() -> ExitCode {
    eprintln!(
        "usage: keys api-key --id ID [--namespace NS] [--scopes 'a b'] [--roles 'a b']   (reads MCP_API_KEY_SALT)\n       keys token --sub SUB [--namespace NS] [--scopes 'a b'] [--roles 'a b'] [--ttl SECONDS] [--aud URL] [--iss URL]   (reads MCP_JWT_SECRET)"
    );
    ExitCode::from(2)
}

/// The server's settings, read and checked the way the server reads them.
fn settings() -> Result<WardenConfig, ExitCode> {
    WardenConfig::from_env().map_err(|error| {
        eprintln!("keys: {error}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        return usage();
    };
    let mut options = std::collections::HashMap::new();
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let (Some(name), Some(value)) = (flag.strip_prefix("--"), rest.next()) else {
            return usage();
        };
        options.insert(name.to_owned(), value.clone());
    }
    let words = |name: &str| -> Vec<String> {
        options
            .get(name)
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    match command.as_str() {
        "api-key" => {
            let Some(id) = options.get("id") else {
                return usage();
            };
            let config = match settings() {
                Ok(config) => config,
                Err(code) => return code,
            };
            let Some(salt) = config.api_key_salt else {
                eprintln!("keys: set MCP_API_KEY_SALT (at least 16 bytes) to the server's salt");
                return ExitCode::from(2);
            };
            if let Err(error) = ApiKeys::new(&salt) {
                eprintln!("keys: MCP_API_KEY_SALT: {}", error.message());
                return ExitCode::from(2);
            }
            let mut random = [0u8; 32];
            if getrandom::fill(&mut random).is_err() {
                eprintln!("keys: no random source");
                return ExitCode::FAILURE;
            }
            let key = format!(
                "sk-{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
            );
            let line = serde_json::json!({
                "id": id,
                "digest": ApiKeys::digest_of(&salt, &key),
                "namespace": options.get("namespace"),
                "roles": words("roles"),
                "scopes": words("scopes"),
            });
            println!("key (give to the client, shown once): {key}");
            println!("line for MCP_API_KEYS_FILE:\n{line}");
            ExitCode::SUCCESS
        }
        "token" => {
            let Some(sub) = options.get("sub") else {
                return usage();
            };
            let config = match settings() {
                Ok(config) => config,
                Err(code) => return code,
            };
            let Some(secret) = config.jwt_secret else {
                eprintln!("keys: set MCP_JWT_SECRET to the server's secret");
                return ExitCode::from(2);
            };
            let ttl: u64 = match options.get("ttl").map(|t| t.parse()) {
                None => 3600,
                Some(Ok(ttl)) => ttl,
                Some(Err(_)) => return usage(),
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut claims = serde_json::json!({
                "sub": sub, "iat": now, "exp": now + ttl,
                "scope": words("scopes").join(" "), "roles": words("roles"),
            });
            for (option, claim) in [("namespace", "namespace"), ("aud", "aud"), ("iss", "iss")] {
                if let Some(value) = options.get(option) {
                    claims[claim] = serde_json::json!(value);
                }
            }
            tower_warden::auth::install_crypto_provider();
            match jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            ) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("keys: cannot sign: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}
