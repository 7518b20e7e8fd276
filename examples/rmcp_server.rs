//! Secure your own rmcp server: the whole recipe in one file.
//!
//! ```text
//! MCP_JWT_SECRET=$(openssl rand -hex 32) cargo run --example rmcp_server --features axum
//! ```
//!
//! An MCP server written with the official Rust SDK (`rmcp`) serves its
//! tools through a `StreamableHttpService`. Four things put it behind the
//! perimeter, from the outside in:
//!
//! 1. `WardenLayer::from_config`: every layer the `MCP_*` settings turn on
//!    (client address behind trusted proxies, IP lists, client certificate,
//!    rate limits, body cap, authentication, `Host` and `Origin` rules, the
//!    per-tool policy of `MCP_TOOL_SCOPES`) in the canonical order.
//! 2. `JsonRpcErrorsLayer`: a refusal an MCP client reads as a JSON-RPC
//!    error, not only as an HTTP status.
//! 3. `SessionBindingLayer`: an MCP session id works only for the principal
//!    that opened the session; anyone else is told the session is unknown.
//! 4. Serving with the peer address (`into_make_service_with_connect_info`),
//!    which the client address and everything keyed on it start from.
//!
//! A bad setting exits with status 2 and one line naming the variable.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use tokio_util::sync::CancellationToken;
use tower_warden::ConfigError;
use tower_warden::config::WardenConfig;
use tower_warden::mcp::{JsonRpcErrorsLayer, SessionBindingLayer};
use tower_warden::principal::Principal;
use tower_warden::stack::WardenLayer;

/// Where the recipe listens: loopback, as the default `Host` rule expects.
const ADDRESS: &str = "127.0.0.1:8000";

/// Arguments of `greet`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct GreetArgs {
    /// Who to greet.
    pub name: String,
}

/// The MCP server: one tool that says hello, and one that says who called.
#[derive(Clone, Debug)]
pub struct Hello {
    tool_router: ToolRouter<Self>,
}

impl Default for Hello {
    fn default() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl Hello {
    #[tool(description = "Say hello to someone")]
    fn greet(&self, Parameters(GreetArgs { name }): Parameters<GreetArgs>) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::text(format!("Hello, {name}!"))])
    }

    #[tool(description = "The subject of the caller's credential")]
    fn whoami(&self, context: RequestContext<RoleServer>) -> CallToolResult {
        // rmcp passes the HTTP request head on; the perimeter left the
        // authenticated `Principal` in its extensions.
        let subject = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>())
            .map_or("unknown", |principal| principal.subject());
        CallToolResult::success(vec![ContentBlock::text(subject.to_owned())])
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Hello {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("hello", env!("CARGO_PKG_VERSION")))
    }
}

/// The app of `config`: `/mcp` behind the perimeter, `/health` outside it
/// for load balancers. Sessions end when `shutdown` is cancelled.
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
pub fn app(config: &WardenConfig, shutdown: &CancellationToken) -> Result<Router, ConfigError> {
    let warden = WardenLayer::from_config(config)?;
    for warning in warden.warnings() {
        tracing::warn!("{warning}");
    }
    let max_body = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
    let mcp = StreamableHttpService::new(
        || Ok(Hello::default()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_cancellation_token(shutdown.child_token())
            .with_max_request_body_bytes(max_body)
            // The perimeter checks `Host` and `Origin` (MCP_ALLOWED_HOSTS,
            // MCP_ALLOWED_ORIGINS) and answers in its own problem format.
            .disable_allowed_hosts()
            .disable_allowed_origins(),
    );
    // `route_layer`: the last one added is the outermost.
    let mcp = Router::new()
        .route_service("/mcp", mcp)
        .route_layer(SessionBindingLayer::new())
        .route_layer(JsonRpcErrorsLayer::new().max_body_bytes(max_body))
        .route_layer(warden);
    Ok(mcp.route("/health", get(|| async { "ok" })))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().init();
    let config = match WardenConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    let app = match app(&config, &shutdown) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(ADDRESS).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {ADDRESS}: {error}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("MCP server listening on http://{ADDRESS}/mcp");
    // The peer address: `ClientIpLayer` starts from it.
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let stop = shutdown.clone();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        })
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
