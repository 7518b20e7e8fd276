//! The gateway's connection store, through sqlx: an embedded SQLite file by
//! default, PostgreSQL when several instances share their connections. One
//! code path (sqlx's `Any` driver) and portable SQL serve both; the schema
//! is migrated at start-up.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

/// The default upstream timeout, when a connection names none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The longest upstream timeout.
pub const MAX_TIMEOUT_MS: u64 = 300_000;

/// The schema, one step per version; applied in order, each once.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE mcp_connections (
            id TEXT PRIMARY KEY,
            namespace TEXT NOT NULL,
            server_name TEXT NOT NULL,
            url TEXT NOT NULL,
            timeout_ms BIGINT NOT NULL,
            credential TEXT,
            created_at_us BIGINT NOT NULL,
            UNIQUE (namespace, server_name)
        )",
    ),
    // Each connection's approved tools: a digest of each definition, and
    // the definition itself (what an operator compares a change with).
    (
        2,
        "CREATE TABLE mcp_tool_pins (
            connection_id TEXT NOT NULL,
            tool TEXT NOT NULL,
            digest TEXT NOT NULL,
            definition TEXT NOT NULL,
            pinned_at_us BIGINT NOT NULL,
            PRIMARY KEY (connection_id, tool)
        )",
    ),
    // When the connection's tools were first pinned; NULL: not yet (the
    // first listing pins them).
    (
        3,
        "ALTER TABLE mcp_connections ADD COLUMN tools_pinned_at_us BIGINT",
    ),
    // How the gateway authenticates to the upstream (`UpstreamAuth`).
    (
        4,
        "ALTER TABLE mcp_connections ADD COLUMN upstream_auth TEXT NOT NULL DEFAULT 'credential'",
    ),
];

/// How the gateway authenticates its calls to a connection's upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamAuth {
    /// The connection's stored credential as a bearer token, or nothing
    /// when it has none.
    #[default]
    Credential,
    /// The caller's access token exchanged at `MCP_TOKEN_EXCHANGE_URL`
    /// for one whose resource is the upstream's URL (RFC 8693, RFC 8707).
    TokenExchange,
}

impl UpstreamAuth {
    /// Its column value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Credential => "credential",
            Self::TokenExchange => "token_exchange",
        }
    }
}

/// The most tools one connection keeps pinned.
pub const MAX_PINNED_TOOLS: usize = 1024;

/// An approved tool definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The tool's name on its upstream.
    pub tool: String,
    /// [`ToolDigest`](tower_warden::mcp::tool_integrity::ToolDigest) of the
    /// definition, in hex.
    pub digest: String,
    /// The definition as approved (JSON).
    pub definition: String,
}

/// A registered upstream MCP server, owned by one namespace.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Connection {
    /// Random, 128 bits in hex.
    pub id: String,
    /// The owning namespace.
    pub namespace: String,
    /// The prefix of its tools on the MCP endpoint (`<server_name>.<tool>`).
    pub server_name: String,
    /// The upstream's Streamable HTTP endpoint.
    pub url: String,
    /// How long one upstream call may take.
    pub timeout_ms: u64,
    /// When it was registered (Unix seconds).
    pub created_at: i64,
    /// Whether a credential is kept for the upstream.
    pub has_credential: bool,
    /// How the upstream is called.
    pub upstream_auth: UpstreamAuth,
    /// The upstream credential: sent to the upstream, never serialized.
    #[serde(skip)]
    pub credential: Option<String>,
    /// A credential is stored but cannot be decrypted with this server's
    /// key (the key changed, or the row was copied from another id): the
    /// upstream is not called.
    #[serde(skip)]
    pub credential_unreadable: bool,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("namespace", &self.namespace)
            .field("server_name", &self.server_name)
            .field("url", &self.url)
            .field("timeout_ms", &self.timeout_ms)
            .field("has_credential", &self.has_credential)
            .finish_non_exhaustive()
    }
}

/// What a caller registers.
#[derive(Clone, Debug)]
pub struct NewConnection {
    /// 1–64 of `A-Z a-z 0-9 _ -`; unique in the namespace.
    pub server_name: String,
    /// An `http` or `https` URL with a host.
    pub url: String,
    /// 1..=300 000.
    pub timeout_ms: u64,
    /// Sent to the upstream as a bearer token.
    pub credential: Option<String>,
    /// How the upstream is called (a credential and token exchange
    /// exclude each other).
    pub upstream_auth: UpstreamAuth,
}

/// Why the store refused or failed.
#[derive(Debug)]
pub enum StoreError {
    /// A field is not acceptable (400).
    Invalid(String),
    /// The namespace already has a connection of that name (409).
    Conflict(String),
    /// The namespace already has a connection to that upstream URL, under
    /// another name (409 `duplicate_upstream`).
    Duplicate(String),
    /// The namespace already holds as many connections as it may (409
    /// `connection_limit`).
    Limit(u32),
    /// The database failed.
    Database(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(why) | Self::Conflict(why) | Self::Duplicate(why) => f.write_str(why),
            Self::Limit(max) => write!(
                f,
                "this namespace already has {max} connections, the most it may have \
                 (MCP_GATEWAY_MAX_CONNECTIONS): delete one first"
            ),
            Self::Database(why) => write!(f, "connection store: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

fn database(error: &sqlx::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

/// The connection store.
#[derive(Clone)]
pub struct ConnectionStore {
    pool: AnyPool,
    max_per_namespace: u32,
    /// Encrypts credentials at rest; `None`: credentials are refused.
    key: Option<std::sync::Arc<aws_lc::aead::LessSafeKey>>,
}

impl fmt::Debug for ConnectionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionStore").finish_non_exhaustive()
    }
}

impl ConnectionStore {
    /// Opens the store at `url` and migrates it: `sqlite://path` (the file
    /// and its directory are created), `sqlite::memory:`, or
    /// `postgres://user:password@host/db`.
    ///
    /// # Errors
    ///
    /// The database cannot be opened or migrated. The message never holds
    /// the URL (it may hold a password).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let memory = url.starts_with("sqlite::memory:") || url.contains("mode=memory");
        let mut options = AnyPoolOptions::new();
        let url = if sqlite && !memory {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:")
                .split('?')
                .next()
                .unwrap_or_default();
            if let Some(dir) = std::path::Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Database(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            options = options.max_connections(4);
            if url.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            }
        } else if memory {
            // Every connection to `:memory:` is a database of its own: keep
            // exactly one, forever.
            options = options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
            url.to_owned()
        } else {
            options = options.max_connections(8);
            url.to_owned()
        };
        if sqlite {
            options = options.after_connect(|connection, _| {
                Box::pin(async move {
                    // Writers wait for each other instead of failing.
                    sqlx::query("PRAGMA busy_timeout = 5000")
                        .execute(&mut *connection)
                        .await?;
                    sqlx::query("PRAGMA journal_mode = WAL")
                        .execute(&mut *connection)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(&url)
            .await
            .map_err(|e| {
                StoreError::Database(format!("cannot open the database: {}", redact(&e)))
            })?;
        let store = Self {
            pool,
            max_per_namespace: u32::MAX,
            key: None,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS mcp_schema_migrations (version BIGINT PRIMARY KEY)",
        )
        .execute(&self.pool)
        .await
        .map_err(|e| database(&e))?;
        for &(version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await.map_err(|e| database(&e))?;
            let done = sqlx::query("SELECT version FROM mcp_schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| database(&e))?;
            if done.is_some() {
                continue;
            }
            sqlx::query(sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| database(&e))?;
            let recorded = sqlx::query("INSERT INTO mcp_schema_migrations (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await;
            match recorded {
                Ok(_) => tx.commit().await.map_err(|e| database(&e))?,
                // Another instance migrated first.
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(database(&e)),
            }
        }
        Ok(())
    }

    /// The store, refusing a namespace's connection beyond the `max`th
    /// (unlimited unless set).
    #[must_use]
    pub fn with_max_per_namespace(mut self, max: u32) -> Self {
        self.max_per_namespace = max;
        self
    }

    /// The store, encrypting credentials with `key` (AES-256-GCM, a random
    /// nonce per record, the connection id as associated data so that a
    /// ciphertext copied to another row does not decrypt). Without a key,
    /// a connection with a credential is refused: a credential is never
    /// written in plain text. Rows written in plain text before encryption
    /// existed are still read as they are.
    #[must_use]
    pub fn with_credential_key(mut self, key: Option<[u8; 32]>) -> Self {
        self.key = key.and_then(|key| {
            aws_lc::aead::UnboundKey::new(&aws_lc::aead::AES_256_GCM, &key)
                .ok()
                .map(|key| std::sync::Arc::new(aws_lc::aead::LessSafeKey::new(key)))
        });
        self
    }

    /// Registers a connection for `namespace`. The count and the insert are
    /// one statement: on SQLite, where writers take turns, the cap is exact;
    /// on PostgreSQL, registrations racing in one namespace may each see
    /// room for one more and overshoot it by as many as raced.
    ///
    /// # Errors
    ///
    /// [`StoreError::Invalid`] for a bad field, [`StoreError::Conflict`]
    /// for a name the namespace already uses, [`StoreError::Duplicate`]
    /// for an upstream URL it already uses (see [`same_upstream`]),
    /// [`StoreError::Limit`] when the namespace has as many connections as
    /// it may.
    pub async fn create(
        &self,
        namespace: &str,
        new: NewConnection,
    ) -> Result<Connection, StoreError> {
        validate(namespace, &new)?;
        // One upstream, one name: a second name would only serve to escape
        // rules written for the first. (The same name again is a name
        // conflict, answered by the insert. Checked before the insert: two
        // registrations racing could both pass; the rules keyed
        // `*.<tool>` and counted per rule hold either way.)
        if let Some(existing) = self
            .list(namespace)
            .await?
            .into_iter()
            .find(|c| c.server_name != new.server_name && same_upstream(&c.url, &new.url))
        {
            return Err(StoreError::Duplicate(format!(
                "this namespace already reaches this upstream as {}",
                existing.server_name
            )));
        }
        let created_us = now_us();
        let id = random_id()?;
        let sealed = match (&new.credential, &self.key) {
            (None, _) => None,
            (Some(credential), Some(key)) => Some(seal(key, &id, credential)?),
            (Some(_), None) => {
                return Err(StoreError::Invalid(
                    "this server cannot store upstream credentials: it has no \
                     MCP_GATEWAY_CREDENTIAL_KEY"
                        .to_owned(),
                ));
            }
        };
        let connection = Connection {
            id,
            namespace: namespace.to_owned(),
            server_name: new.server_name,
            url: new.url,
            timeout_ms: new.timeout_ms,
            created_at: created_us / 1_000_000,
            has_credential: new.credential.is_some(),
            credential: new.credential,
            credential_unreadable: false,
            upstream_auth: new.upstream_auth,
        };
        let inserted = sqlx::query(
            "INSERT INTO mcp_connections
                (id, namespace, server_name, url, timeout_ms, credential, created_at_us,
                 upstream_auth)
             SELECT $1, $2, $3, $4, $5, $6, $7, $9
             WHERE (SELECT COUNT(*) FROM mcp_connections WHERE namespace = $2) < $8",
        )
        .bind(&connection.id)
        .bind(&connection.namespace)
        .bind(&connection.server_name)
        .bind(&connection.url)
        .bind(i64::try_from(connection.timeout_ms).unwrap_or(i64::MAX))
        .bind(sealed)
        .bind(created_us)
        .bind(i64::from(self.max_per_namespace))
        .bind(connection.upstream_auth.as_str())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(done) if done.rows_affected() == 0 => Err(StoreError::Limit(self.max_per_namespace)),
            Ok(_) => Ok(connection),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "this namespace already has a connection named {}",
                connection.server_name
            ))),
            Err(e) => Err(database(&e)),
        }
    }

    /// The connections of `namespace`, oldest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn list(&self, namespace: &str) -> Result<Vec<Connection>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, namespace, server_name, url, timeout_ms, credential, created_at_us,
                    upstream_auth
             FROM mcp_connections WHERE namespace = $1 ORDER BY created_at_us, id",
        )
        .bind(namespace)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| database(&e))?;
        rows.iter().map(|r| self.row(r)).collect()
    }

    /// The connection `id`, whoever owns it (the caller compares the
    /// namespace).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        if !is_id(id) {
            return Ok(None);
        }
        let found = sqlx::query(
            "SELECT id, namespace, server_name, url, timeout_ms, credential, created_at_us,
                    upstream_auth
             FROM mcp_connections WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| database(&e))?;
        found.as_ref().map(|r| self.row(r)).transpose()
    }

    /// Deletes `id`; `true` when it existed.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| database(&e))?;
        sqlx::query("DELETE FROM mcp_tool_pins WHERE connection_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| database(&e))?;
        let done = sqlx::query("DELETE FROM mcp_connections WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| database(&e))?;
        tx.commit().await.map_err(|e| database(&e))?;
        Ok(done.rows_affected() > 0)
    }

    /// The approved tools of connection `id`, by name; `None` while its
    /// tools have never been pinned (or the connection is gone).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn pins(&self, id: &str) -> Result<Option<Vec<Pin>>, StoreError> {
        let pinned = sqlx::query("SELECT tools_pinned_at_us FROM mcp_connections WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| database(&e))?;
        let pinned = match pinned {
            Some(row) => row
                .try_get::<Option<i64>, _>("tools_pinned_at_us")
                .map_err(|e| database(&e))?
                .is_some(),
            None => false,
        };
        if !pinned {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT tool, digest, definition FROM mcp_tool_pins
             WHERE connection_id = $1 ORDER BY tool",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| database(&e))?;
        rows.iter()
            .map(|row| {
                let get = |e: sqlx::Error| database(&e);
                Ok(Pin {
                    tool: row.try_get("tool").map_err(get)?,
                    digest: row.try_get("digest").map_err(get)?,
                    definition: row.try_get("definition").map_err(get)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Pins `pins` as connection `id`'s first approved tools (trust on
    /// first use), unless its tools were pinned already — by another
    /// instance sharing the store, say: then nothing is written and
    /// `false` is answered. At most [`MAX_PINNED_TOOLS`] are kept.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn pin_first(&self, id: &str, pins: &[Pin]) -> Result<bool, StoreError> {
        let now = now_us();
        let mut tx = self.pool.begin().await.map_err(|e| database(&e))?;
        let claimed = sqlx::query(
            "UPDATE mcp_connections SET tools_pinned_at_us = $2
             WHERE id = $1 AND tools_pinned_at_us IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| database(&e))?;
        if claimed.rows_affected() == 0 {
            return Ok(false);
        }
        for pin in pins.iter().take(MAX_PINNED_TOOLS) {
            upsert_pin(&mut tx, id, pin, now).await?;
        }
        tx.commit().await.map_err(|e| database(&e))?;
        Ok(true)
    }

    /// Approves one tool of connection `id`: pins `pin` (replacing the
    /// tool's earlier pin), or, for `Err(tool)`, forgets the pin of a tool
    /// the upstream no longer offers. `false` when the connection is gone,
    /// or already holds [`MAX_PINNED_TOOLS`] other pins.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub async fn approve(&self, id: &str, pin: Result<&Pin, &str>) -> Result<bool, StoreError> {
        let now = now_us();
        let mut tx = self.pool.begin().await.map_err(|e| database(&e))?;
        let found = sqlx::query(
            "UPDATE mcp_connections SET tools_pinned_at_us = COALESCE(tools_pinned_at_us, $2)
             WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| database(&e))?;
        if found.rows_affected() == 0 {
            return Ok(false);
        }
        match pin {
            Ok(pin) => {
                let others: i64 = sqlx::query(
                    "SELECT COUNT(*) AS n FROM mcp_tool_pins WHERE connection_id = $1 AND tool <> $2",
                )
                .bind(id)
                .bind(&pin.tool)
                .fetch_one(&mut *tx)
                .await
                .and_then(|row| row.try_get("n"))
                .map_err(|e| database(&e))?;
                if usize::try_from(others).unwrap_or(usize::MAX) >= MAX_PINNED_TOOLS {
                    return Ok(false);
                }
                upsert_pin(&mut tx, id, pin, now).await?;
            }
            Err(tool) => {
                sqlx::query("DELETE FROM mcp_tool_pins WHERE connection_id = $1 AND tool = $2")
                    .bind(id)
                    .bind(tool)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| database(&e))?;
            }
        }
        tx.commit().await.map_err(|e| database(&e))?;
        Ok(true)
    }
}

async fn upsert_pin(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    pin: &Pin,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO mcp_tool_pins (connection_id, tool, digest, definition, pinned_at_us)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (connection_id, tool) DO UPDATE
         SET digest = excluded.digest, definition = excluded.definition,
             pinned_at_us = excluded.pinned_at_us",
    )
    .bind(id)
    .bind(&pin.tool)
    .bind(&pin.digest)
    .bind(&pin.definition)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| database(&e))?;
    Ok(())
}

impl ConnectionStore {
    fn row(&self, row: &sqlx::any::AnyRow) -> Result<Connection, StoreError> {
        let get = |e: sqlx::Error| database(&e);
        let timeout: i64 = row.try_get("timeout_ms").map_err(get)?;
        let stored: Option<String> = row.try_get("credential").map_err(get)?;
        let id: String = row.try_get("id").map_err(get)?;
        let has_credential = stored.is_some();
        let upstream_auth = match row
            .try_get::<String, _>("upstream_auth")
            .map_err(get)?
            .as_str()
        {
            "credential" => UpstreamAuth::Credential,
            "token_exchange" => UpstreamAuth::TokenExchange,
            // Written by hand or by a later version: not guessed at.
            other => {
                return Err(StoreError::Database(format!(
                    "connection {id} has an unknown upstream_auth `{other}`"
                )));
            }
        };
        let credential = match stored {
            None => None,
            Some(text) => match text.strip_prefix(SEALED) {
                // Written before credentials were encrypted.
                None => Some(text),
                Some(sealed) => self.key.as_ref().and_then(|key| open(key, &id, sealed)),
            },
        };
        Ok(Connection {
            credential_unreadable: has_credential && credential.is_none(),
            id,
            namespace: row.try_get("namespace").map_err(get)?,
            server_name: row.try_get("server_name").map_err(get)?,
            url: row.try_get("url").map_err(get)?,
            timeout_ms: u64::try_from(timeout).unwrap_or(DEFAULT_TIMEOUT_MS),
            created_at: row.try_get::<i64, _>("created_at_us").map_err(get)? / 1_000_000,
            has_credential,
            credential,
            upstream_auth,
        })
    }
}

/// How a sealed credential starts in its column (anything else is a
/// credential stored in plain text by an earlier version).
const SEALED: &str = "aes256gcm:";

/// `credential` encrypted for the row `id`: `aes256gcm:` and the hex of the
/// nonce, the ciphertext and the tag.
fn seal(key: &aws_lc::aead::LessSafeKey, id: &str, credential: &str) -> Result<String, StoreError> {
    let mut nonce = [0u8; aws_lc::aead::NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
    let mut data = credential.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        aws_lc::aead::Nonce::assume_unique_for_key(nonce),
        aws_lc::aead::Aad::from(id.as_bytes()),
        &mut data,
    )
    .map_err(|_| StoreError::Database("cannot encrypt the credential".to_owned()))?;
    let hex: String = nonce
        .iter()
        .chain(&data)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("{SEALED}{hex}"))
}

/// The credential sealed for the row `id`, or `None` when it does not
/// decrypt (another key, another row, or damaged).
fn open(key: &aws_lc::aead::LessSafeKey, id: &str, sealed: &str) -> Option<String> {
    if !sealed.len().is_multiple_of(2) || !sealed.is_ascii() {
        return None;
    }
    let bytes: Vec<u8> = (0..sealed.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&sealed[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    if bytes.len() < aws_lc::aead::NONCE_LEN {
        return None;
    }
    let (nonce, data) = bytes.split_at(aws_lc::aead::NONCE_LEN);
    let nonce = aws_lc::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let plain = key
        .open_in_place(nonce, aws_lc::aead::Aad::from(id.as_bytes()), &mut data)
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// The key credentials are encrypted with: `configured`
/// (`MCP_GATEWAY_CREDENTIAL_KEY`), else, in development only, a random
/// key for this run (credentials stored with it cannot be read after a
/// restart), else none (credentials are refused).
///
/// # Errors
///
/// No randomness for the development key.
pub fn credential_key(
    configured: Option<[u8; 32]>,
    development: bool,
) -> Result<Option<[u8; 32]>, StoreError> {
    if configured.is_some() || !development {
        return Ok(configured);
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
    tracing::warn!(
        "MCP_GATEWAY_CREDENTIAL_KEY is not set: upstream credentials are encrypted with a key \
         for this run only and cannot be read after a restart"
    );
    Ok(Some(key))
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// The error without anything that could be the URL.
fn redact(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Configuration(_) => "the URL is not usable".to_owned(),
        other => other.to_string(),
    }
}

/// Microseconds since the Unix epoch: the creation order.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn random_id() -> Result<String, StoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Database(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether two upstream URLs name the same upstream as the HTTP client
/// reads them (its own URL parser: `http://127.1:80/mcp` and
/// `http://127.0.0.1/mcp` are one); the fragment, never sent, is ignored.
pub fn same_upstream(a: &str, b: &str) -> bool {
    let read = |url: &str| {
        reqwest::Url::parse(url).ok().map(|mut url| {
            url.set_fragment(None);
            url
        })
    };
    matches!((read(a), read(b)), (Some(a), Some(b)) if a == b)
}

fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn validate(namespace: &str, new: &NewConnection) -> Result<(), StoreError> {
    let invalid = |why: &str| Err(StoreError::Invalid(why.to_owned()));
    if !tower_warden::namespace::is_valid(namespace) {
        return invalid("invalid namespace");
    }
    let name = &new.server_name;
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return invalid("server_name must be 1 to 64 of A-Z, a-z, 0-9, _ and -");
    }
    // Read with the HTTP client's own parser (the one the SSRF check uses
    // too), so the URL stored is the URL called; and, stricter, as an HTTP
    // URI with its host where it is written (`http:///x` is refused rather
    // than read as host `x`).
    let parsed = reqwest::Url::parse(&new.url);
    let written = new.url.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|h| !h.is_empty())
    });
    let ok_url = written
        && parsed.as_ref().is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|h| !h.is_empty())
        });
    if !ok_url || new.url.len() > 2048 {
        return invalid("url must be an http or https URL with a host");
    }
    // The URL is shown in every listing: a password in it would be too.
    if parsed.is_ok_and(|url| !url.username().is_empty() || url.password().is_some())
        || new
            .url
            .split('/')
            .nth(2)
            .is_some_and(|authority| authority.contains('@'))
    {
        return invalid("url must not hold a user or password: use credential");
    }
    if new.timeout_ms == 0 || new.timeout_ms > MAX_TIMEOUT_MS {
        return invalid("timeout must be between 1 ms and 300 s");
    }
    // Sent as `Authorization: Bearer <credential>`: visible ASCII only.
    if new
        .credential
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 8192 || !c.bytes().all(|b| b.is_ascii_graphic()))
    {
        return invalid("credential must be 1 to 8192 visible ASCII characters");
    }
    if new.upstream_auth == UpstreamAuth::TokenExchange && new.credential.is_some() {
        return invalid(
            "a connection authenticates either with its credential or by token exchange, not both",
        );
    }
    Ok(())
}
