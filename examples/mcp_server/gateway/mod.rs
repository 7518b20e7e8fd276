//! The gateway: namespace-owned connections to upstream MCP servers, their
//! tools discovered and run over Streamable HTTP, offered on `/mcp` and on
//! the connection API.
//!
//! - [`routes`]: the REST connection API (`/api/v1/mcp/connections...`);
//! - [`upstream`]: the MCP clients of the upstreams, their breakers and the
//!   address rule for outgoing connections;
//! - [`store`]: where connections are kept (SQLite or PostgreSQL);
//! - [`capped`]: the HTTP client of upstream calls, every answer capped.

#[path = "capped.rs"]
pub mod capped;
#[path = "routes.rs"]
pub mod routes;
#[path = "store.rs"]
pub mod store;
#[path = "upstream.rs"]
pub mod upstream;

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool};
use tower_warden::ConfigError;
use tower_warden::circuit_breaker::{CircuitBreaker, CircuitBreakers};

use super::settings;
use super::tools::{BoxFuture, ToolSource};
use store::ConnectionStore;
use upstream::{OnBehalf, UpstreamError, Upstreams};

pub use routes::{Access, routes};

/// The store and the upstream clients, shared by the routes and the MCP
/// endpoint.
#[derive(Debug)]
pub struct Gateway {
    /// Where connections are kept.
    pub store: ConnectionStore,
    /// The upstream clients and their breakers.
    pub upstreams: Upstreams,
}

impl Gateway {
    /// The upstream tools of `namespace`, named `<server_name>.<tool>`.
    /// Upstreams that fail (or whose breaker is open) are left out. At most
    /// `MCP_GATEWAY_FANOUT` upstreams are asked at once, and a list fetched
    /// within `MCP_GATEWAY_TOOLS_CACHE_TTL` is reused.
    pub async fn tools_for(&self, namespace: &str, on: OnBehalf<'_>) -> Vec<Tool> {
        use futures::StreamExt as _;
        let Ok(connections) = self.store.list(namespace).await else {
            return Vec::new();
        };
        let upstreams = &self.upstreams;
        let mut lists: Vec<_> = futures::stream::iter(connections.into_iter().enumerate())
            .map(move |(order, connection)| async move {
                let tools = upstreams.list_tools(&connection, on).await.ok()?;
                Some((order, connection.server_name, tools))
            })
            .buffer_unordered(upstreams.fanout_limit())
            .filter_map(std::future::ready)
            .collect()
            .await;
        // In the connections' order, whichever answered first.
        lists.sort_by_key(|(order, ..)| *order);
        let mut all = Vec::new();
        for (_, server, tools) in lists {
            for mut tool in tools {
                tool.name = format!("{server}.{}", tool.name).into();
                all.push(tool);
            }
        }
        all
    }

    /// Runs `<server_name>.<tool>` for `namespace`, if `name` is one.
    pub async fn call(
        &self,
        namespace: &str,
        on: OnBehalf<'_>,
        name: &str,
        arguments: Option<JsonObject>,
    ) -> Option<Result<rmcp::model::CallToolResult, UpstreamError>> {
        let (server, tool) = name.split_once('.')?;
        let connections = self.store.list(namespace).await.ok()?;
        let connection = connections.iter().find(|c| c.server_name == server)?;
        Some(
            self.upstreams
                .call_tool(connection, tool, arguments, on)
                .await,
        )
    }
}

/// The gateway of `settings`: its connection store (`MCP_DATABASE_URL`,
/// migrated at start-up) and one circuit breaker per upstream.
///
/// # Errors
///
/// The store cannot be opened or migrated (`MCP_DATABASE_URL`), or a
/// breaker setting is unusable.
pub async fn open(settings: &settings::Gateway) -> Result<Arc<Gateway>, ConfigError> {
    let store = ConnectionStore::connect(&settings.database_url)
        .await
        .map_err(|e| ConfigError::new("MCP_DATABASE_URL", e.to_string()))?;
    let breakers = breakers(settings)?;
    let store = store
        .with_max_per_namespace(settings.max_connections)
        .with_credential_key(
            store::credential_key(settings.credential_key, settings.development)
                .map_err(|e| ConfigError::new("MCP_GATEWAY_CREDENTIAL_KEY", e.to_string()))?,
        );
    Ok(Arc::new(Gateway {
        store: store.clone(),
        upstreams: Upstreams::new(
            breakers,
            upstream::Reach {
                allow_private: settings.allow_private_upstreams,
            },
            store,
        )
        .tools_cache_ttl(settings.tools_cache_ttl)
        .tool_screen(settings.screen.clone(), settings.quarantine)
        .annotations(std::sync::Arc::clone(&settings.annotations))
        .token_exchange(settings.token_exchange.clone())
        .fanout(settings.fanout),
    }))
}

/// One breaker per upstream connection, from `CIRCUIT_BREAKER_*`.
fn breakers(settings: &settings::Gateway) -> Result<CircuitBreakers, ConfigError> {
    CircuitBreakers::new(
        CircuitBreaker::builder("upstream")
            .failure_threshold(settings.breaker_failure_threshold)
            .reset_timeout(settings.breaker_reset_timeout),
    )
    .map_err(|e| {
        let setting = if e.setting() == "reset_timeout" {
            "CIRCUIT_BREAKER_RESET_TIMEOUT"
        } else {
            "CIRCUIT_BREAKER_FAILURE_THRESHOLD"
        };
        e.for_setting(setting)
    })
}
/// The MCP endpoint offers each caller its upstream tools, and routes their
/// calls; an upstream that fails answers with a tool error the model can
/// read.
impl ToolSource for Gateway {
    fn tools_for<'a>(
        &'a self,
        namespace: &'a str,
        caller: Option<&'a http::Extensions>,
    ) -> BoxFuture<'a, Vec<Tool>> {
        Box::pin(Gateway::tools_for(self, namespace, OnBehalf::of(caller)))
    }

    fn call<'a>(
        &'a self,
        namespace: &'a str,
        caller: Option<&'a http::Extensions>,
        name: &'a str,
        arguments: Option<JsonObject>,
    ) -> BoxFuture<'a, Option<Result<rmcp::model::CallToolResult, rmcp::ErrorData>>> {
        Box::pin(async move {
            Some(
                match Gateway::call(self, namespace, OnBehalf::of(caller), name, arguments).await? {
                    Ok(result) => Ok(result),
                    // Refused by the tool rules: as the handler refuses.
                    Err(UpstreamError::Denied(why)) => {
                        Err(rmcp::ErrorData::invalid_request(why, None))
                    }
                    Err(error) => Ok(rmcp::model::CallToolResult::error(vec![
                        rmcp::model::ContentBlock::text(error.public_detail()),
                    ])),
                },
            )
        })
    }
}
