//! The reference MCP server: rmcp's Streamable HTTP server behind the
//! tower-warden perimeter, configured only by `MCP_*` environment variables.
//!
//! ```text
//! cargo run --example mcp_server
//! MCP_PORT=9000 MCP_ALLOWED_ORIGINS=http://localhost:6274 cargo run --example mcp_server
//! ```
//!
//! Endpoints: `POST/GET/DELETE /mcp` (MCP Streamable HTTP, authenticated),
//! `GET /health`, and the RFC 9728 metadata at
//! `/.well-known/oauth-protected-resource` (and `.../mcp`). With nothing
//! configured, the server prints a development token for an ephemeral secret.
//! A bad setting exits with status 2 and one line naming the variable.

mod app;

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tower_warden::config::WardenConfig;

fn main() -> ExitCode {
    let config = match WardenConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("mcp_server: {error}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mcp_server: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mcp_server: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: WardenConfig) -> Result<(), String> {
    let shutdown = CancellationToken::new();
    let auth = app::auth(&config).map_err(|e| e.to_string())?;
    for warning in &auth.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(token) = &auth.dev_token {
        // Printed on purpose, outside the logs: the development credential.
        eprintln!(
            "\nDevelopment token for {} (valid 24 h, every scope; ephemeral, NOT for production):\n\n  Authorization: Bearer {token}\n",
            auth.resource_url
        );
    }
    if let Some(jwt) = &auth.jwt
        && let Err(error) = jwt.prefetch().await
    {
        tracing::warn!(%error, "cannot fetch the JWT signing keys yet; will retry on demand");
    }
    let gateway = app::gateway(&config).await.map_err(|e| e.to_string())?;
    let router = app::router_with(&config, &shutdown, &auth, gateway).map_err(|e| e.to_string())?;
    let address = (config.host.as_str(), config.port);
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", config.host, config.port))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    tracing::info!(
        address = %local,
        environment = %config.environment,
        "MCP server listening on http://{local}/mcp"
    );
    if !local.ip().is_loopback() && config.allowed_hosts == WardenConfig::default().allowed_hosts {
        tracing::warn!(
            "listening beyond loopback, but MCP_ALLOWED_HOSTS only allows loopback names: \
             requests naming any other host get 403 host_forbidden"
        );
    }
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app::serve(listener, router, shutdown)
        .await
        .map_err(|e| format!("server failed: {e}"))?;
    tracing::info!("MCP server stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGINT (Ctrl-C) or SIGTERM.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
