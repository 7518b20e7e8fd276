//! The tools of the reference server: `echo`, `add`, `sleep`, `whoami`.

use std::net::SocketAddr;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use tower_warden::client_cert::ClientCertInfo;
use tower_warden::client_ip::{ClientIp, peer_ip};

/// The longest `sleep` accepted, in milliseconds.
pub const MAX_SLEEP_MS: u64 = 10_000;

/// Arguments of `echo`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

/// Arguments of `add`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// The first number.
    pub a: f64,
    /// The second number.
    pub b: f64,
}

/// Arguments of `sleep`.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds (at most 10 000).
    pub ms: u64,
}

/// The MCP server handler: one per session (or per stateless request).
#[derive(Debug, Clone)]
pub struct Tools {
    tool_router: ToolRouter<Self>,
}

impl Default for Tools {
    fn default() -> Self {
        Self::new()
    }
}

impl Tools {
    /// A handler with every tool.
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }
}

fn text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

#[tool_router]
impl Tools {
    #[tool(description = "Return the given text unchanged")]
    fn echo(&self, Parameters(EchoArgs { text: t }): Parameters<EchoArgs>) -> CallToolResult {
        text(t)
    }

    #[tool(description = "Add two numbers")]
    fn add(
        &self,
        Parameters(AddArgs { a, b }): Parameters<AddArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let sum = a + b;
        if !sum.is_finite() {
            return Err(ErrorData::invalid_params(
                "the sum is not a finite number",
                None,
            ));
        }
        Ok(text(sum.to_string()))
    }

    #[tool(description = "Wait the given number of milliseconds (at most 10000), then answer")]
    async fn sleep(
        &self,
        Parameters(SleepArgs { ms }): Parameters<SleepArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        if ms > MAX_SLEEP_MS {
            return Err(ErrorData::invalid_params(
                format!("ms must be at most {MAX_SLEEP_MS}"),
                None,
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(text(format!("slept {ms} ms"))),
            () = context.ct.cancelled() => Err(ErrorData::internal_error("the call was cancelled", None)),
        }
    }

    #[tool(
        description = "What the server knows about the caller: client address (and later certificate and principal)"
    )]
    fn whoami(&self, context: RequestContext<RoleServer>) -> Result<CallToolResult, ErrorData> {
        let parts = context.extensions.get::<http::request::Parts>();
        let client_ip = parts.and_then(|p| ClientIp::of(&p.extensions));
        let peer = parts.and_then(|p| {
            p.extensions
                .get::<SocketAddr>()
                .map(|addr| addr.ip())
                .or_else(|| peer_ip(&p.extensions))
        });
        // Present only when `ClientCertLayer` admitted the request.
        let client_cert = parts
            .and_then(|p| p.extensions.get::<ClientCertInfo>())
            .map(|info| serde_json::json!({ "verified": true, "subject": info.subject() }));
        let report = serde_json::json!({
            "client_ip": client_ip.map(|ip| ip.to_string()),
            "peer_ip": peer.map(|ip| ip.to_string()),
            "client_cert": client_cert,
        });
        Ok(text(report.to_string()))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "tower-warden-mcp-server",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Reference MCP server of tower-warden: echo, add, sleep and whoami tools.",
            )
    }
}
