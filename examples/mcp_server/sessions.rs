//! `MCP_SESSION_STORE=redis`: MCP sessions that any instance can serve.
//!
//! One Redis keeps, per session, rmcp's session state (the client's
//! `initialize` parameters, which rmcp replays to restore the session on
//! another instance) and the session's owner (which tower-warden's
//! `ShareSessionsLayer` reads, so that only the principal who opened a
//! session may use it on any instance). Both expire a day after their last
//! read.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};
use tokio::sync::OnceCell;
use tower_warden::BoxFuture;
use tower_warden::ConfigError;
use tower_warden::mcp::{SharedSessions, StoreError};

/// How long an unused session is kept.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The most a Redis call may take before it counts as a failure.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The prefix of every key written here.
const PREFIX: &str = "tower-warden:mcp-session:";

/// Sessions in Redis; clones share one connection.
#[derive(Clone)]
pub struct RedisSessions(Arc<Inner>);

struct Inner {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
}

impl RedisSessions {
    /// Sessions in the Redis of `url` (connected on first use), TLS
    /// verified against `ca_pem` when given, as the rate limiter's.
    ///
    /// # Errors
    ///
    /// The URL is not a Redis URL (named `MCP_REDIS_URL`, password never
    /// shown), or the CA is unusable (`MCP_REDIS_CA_FILE`).
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<Self, ConfigError> {
        let client = tower_warden::rate_limit::redis_client(url, ca_pem)
            .map_err(tower_warden::config::relabel_redis_error)?;
        Ok(Self(Arc::new(Inner {
            client,
            connection: OnceCell::new(),
        })))
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let manager = self
            .0
            .connection
            .get_or_try_init(|| async {
                tokio::time::timeout(CALL_TIMEOUT, ConnectionManager::new(self.0.client.clone()))
                    .await
                    .map_err(|_| StoreError::from("Redis did not answer in time"))?
                    .map_err(StoreError::from)
            })
            .await?;
        Ok(manager.clone())
    }

    async fn get(&self, key: String) -> Result<Option<String>, StoreError> {
        let mut connection = self.connection().await?;
        let mut command = redis::cmd("GETEX");
        command.arg(&key).arg("EX").arg(TTL.as_secs());
        let call = command.query_async::<Option<String>>(&mut connection);
        Ok(tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| StoreError::from("Redis did not answer in time"))??)
    }

    async fn set(&self, key: String, value: String) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        let call = connection.set_ex::<_, _, ()>(key, value, TTL.as_secs());
        Ok(tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| StoreError::from("Redis did not answer in time"))??)
    }

    async fn delete(&self, key: String) -> Result<(), StoreError> {
        let mut connection = self.connection().await?;
        let call = connection.del::<_, ()>(key);
        Ok(tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .map_err(|_| StoreError::from("Redis did not answer in time"))??)
    }
}

fn state_key(id: &str) -> String {
    format!("{PREFIX}state:{id}")
}

fn owner_key(id: &str) -> String {
    format!("{PREFIX}owner:{id}")
}

#[async_trait::async_trait]
impl SessionStore for RedisSessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        match self.get(state_key(session_id)).await? {
            Some(json) => Ok(Some(serde_json::from_str(&json)?)),
            None => Ok(None),
        }
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        self.set(state_key(session_id), serde_json::to_string(state)?)
            .await
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        RedisSessions::delete(self, state_key(session_id)).await
    }
}

impl SharedSessions for RedisSessions {
    fn owner(&self, id: String) -> BoxFuture<Result<Option<String>, StoreError>> {
        let this = self.clone();
        Box::pin(async move { this.get(owner_key(&id)).await })
    }

    fn bind(&self, id: String, owner: String) -> BoxFuture<Result<(), StoreError>> {
        let this = self.clone();
        Box::pin(async move { this.set(owner_key(&id), owner).await })
    }

    fn remove(&self, id: String) -> BoxFuture<Result<(), StoreError>> {
        let this = self.clone();
        Box::pin(async move { this.delete(owner_key(&id)).await })
    }
}
