//! The resource server as an OAuth client of its authorization server:
//! how it authenticates ([`ClientAuth`]) and one form POST to an endpoint
//! (introspection, token exchange), its JSON answer read within a bound.
//! Shared by [`Introspection`](super::Introspection) and
//! [`TokenExchange`](super::TokenExchange).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::ConfigError;

/// Largest answer read from an endpoint (64 KiB).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// How the resource server authenticates to the authorization server's
/// endpoints (introspection, token exchange).
#[derive(Clone)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (`client_secret_basic`).
    SecretBasic(String),
    /// The client id and secret in the form (`client_secret_post`).
    SecretPost(String),
    /// A JWT signed with the client's private key (`private_key_jwt`).
    PrivateKeyJwt {
        /// The signing key.
        key: jsonwebtoken::EncodingKey,
        /// Its algorithm (RS256, ES256, …).
        algorithm: jsonwebtoken::Algorithm,
        /// The `kid` to name, if the server knows the key by one.
        kid: Option<String>,
    },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SecretBasic(_) => "SecretBasic(..)",
            Self::SecretPost(_) => "SecretPost(..)",
            Self::PrivateKeyJwt { .. } => "PrivateKeyJwt(..)",
        })
    }
}

impl ClientAuth {
    /// `private_key_jwt` with the PEM private key `pem` (RSA or EC P-256 /
    /// P-384, PKCS#8 or the traditional forms).
    ///
    /// # Errors
    ///
    /// The PEM holds no RSA or EC private key (the error names the setting
    /// `client_key`; a caller reading it from a setting relabels it with
    /// [`ConfigError::for_setting`]).
    pub fn private_key_pem(pem: &[u8], kid: Option<String>) -> Result<Self, ConfigError> {
        use jsonwebtoken::{Algorithm, EncodingKey};
        let text = std::str::from_utf8(pem).unwrap_or_default();
        let (key, algorithm) = if text.contains("RSA PRIVATE KEY")
            || (text.contains("PRIVATE KEY") && EncodingKey::from_rsa_pem(pem).is_ok())
        {
            (EncodingKey::from_rsa_pem(pem), Algorithm::RS256)
        } else {
            (EncodingKey::from_ec_pem(pem), Algorithm::ES256)
        };
        let key =
            key.map_err(|_| ConfigError::new("client_key", "not an RSA or EC private key in PEM"))?;
        Ok(Self::PrivateKeyJwt {
            key,
            algorithm,
            kid,
        })
    }

    fn empty_secret(&self) -> bool {
        matches!(self, Self::SecretBasic(s) | Self::SecretPost(s) if s.is_empty())
    }
}

/// The settings an endpoint's errors at start-up name.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Names {
    pub(crate) url: &'static str,
    pub(crate) client_id: &'static str,
    pub(crate) client_secret: &'static str,
}

/// One endpoint of the authorization server and the client credentials
/// it is asked with.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) client_id: String,
    auth: ClientAuth,
    client: reqwest::Client,
    /// Who else a client assertion is meant for (the issuer), beside the
    /// endpoint itself.
    assertion_audiences: Vec<String>,
}

/// An endpoint's answer: its status and its JSON object.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: http::StatusCode,
    pub(crate) body: Map<String, Value>,
}

/// Why an endpoint gave no usable answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PostError {
    /// Not reached, cut, or no randomness or key for the assertion.
    Unreachable(&'static str),
    /// Reached, but its answer is not a JSON object within the bound.
    BadAnswer(&'static str),
}

impl PostError {
    pub(crate) fn why(self) -> &'static str {
        match self {
            Self::Unreachable(why) | Self::BadAnswer(why) => why,
        }
    }
}

impl Endpoint {
    /// Checks the URL, client id and secret (errors name `names`), and
    /// builds an HTTP client that never follows redirects unless `client`
    /// is given.
    pub(crate) fn new(
        names: Names,
        url: String,
        client_id: String,
        auth: ClientAuth,
        client: Option<reqwest::Client>,
        assertion_audiences: Vec<String>,
    ) -> Result<Self, ConfigError> {
        super::ensure_crypto_provider();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::new(names.url, "not an http(s) URL"));
        }
        if client_id.is_empty() {
            return Err(ConfigError::new(names.client_id, "empty"));
        }
        if auth.empty_secret() {
            return Err(ConfigError::new(names.client_secret, "empty"));
        }
        let client = match client {
            Some(client) => client,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| ConfigError::new(names.url, e.to_string()))?,
        };
        Ok(Self {
            url,
            client_id,
            auth,
            client,
            assertion_audiences,
        })
    }

    /// The client authentication, for `Debug`.
    pub(crate) fn auth(&self) -> &ClientAuth {
        &self.auth
    }

    /// POSTs `form` (with the client's credentials) and reads the JSON
    /// answer, whatever its status; `now` dates a client assertion.
    pub(crate) async fn post(
        &self,
        mut form: Vec<(&'static str, String)>,
        now: u64,
    ) -> Result<Answer, PostError> {
        let mut request = self.client.post(&self.url);
        match &self.auth {
            ClientAuth::SecretBasic(secret) => {
                // RFC 6749 §2.3.1: both form-encoded before Basic.
                let pair = format!("{}:{}", form_encode(&self.client_id), form_encode(secret));
                request = request.header(
                    http::header::AUTHORIZATION,
                    format!("Basic {}", STANDARD.encode(pair)),
                );
            }
            ClientAuth::SecretPost(secret) => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_secret", secret.clone()));
            }
            ClientAuth::PrivateKeyJwt {
                key,
                algorithm,
                kid,
            } => {
                let assertion = self.assertion(key, *algorithm, kid.clone(), now)?;
                form.push(("client_id", self.client_id.clone()));
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
                ));
                form.push(("client_assertion", assertion));
            }
        }
        let body: String = form
            .iter()
            .map(|(name, value)| format!("{name}={}", form_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let mut response = request
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|_| PostError::Unreachable("the authorization server cannot be reached"))?;
        let status = response.status();
        let too_large = PostError::BadAnswer("the authorization server's answer is too large");
        if response
            .content_length()
            .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
        {
            return Err(too_large);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| PostError::Unreachable("the authorization server's answer was cut"))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(too_large);
            }
            bytes.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(body)) => Ok(Answer { status, body }),
            // A gateway or proxy in front of it, failing.
            _ if status.is_server_error() => Err(PostError::Unreachable(
                "the authorization server answered with a server error",
            )),
            _ => Err(PostError::BadAnswer(
                "the authorization server's answer is not a JSON object",
            )),
        }
    }

    /// A `private_key_jwt` client assertion, valid for a minute.
    fn assertion(
        &self,
        key: &jsonwebtoken::EncodingKey,
        algorithm: jsonwebtoken::Algorithm,
        kid: Option<String>,
        now: u64,
    ) -> Result<String, PostError> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti)
            .map_err(|_| PostError::Unreachable("no randomness for a client assertion"))?;
        let mut audience = vec![Value::String(self.url.clone())];
        audience.extend(self.assertion_audiences.iter().cloned().map(Value::String));
        let claims = serde_json::json!({
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "iat": now,
            "exp": now + 60,
        });
        let mut header = jsonwebtoken::Header::new(algorithm);
        header.kid = kid;
        jsonwebtoken::encode(&header, &claims, key)
            .map_err(|_| PostError::Unreachable("the client assertion cannot be signed"))
    }
}

/// `application/x-www-form-urlencoded` for one name or value: unreserved
/// characters as they are, everything else percent-encoded.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The system clock, in Unix seconds.
pub(crate) fn system_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
