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

mod server;

use std::process::ExitCode;

use server::settings::Settings;
use server::{dev_token, ops, serving};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("mcp_server: {error}");
            return ExitCode::from(2);
        }
    };
    // Traces (OTEL_*): the exporter runs on a thread of its own.
    let traces = match settings
        .traces
        .export
        .as_ref()
        .map(|traces| traces.install())
        .transpose()
    {
        Ok(traces) => traces,
        Err(error) => {
            eprintln!("mcp_server: {error}");
            return ExitCode::from(2);
        }
    };
    match ops::log_subscriber(&settings, std::io::stderr, traces.as_ref()) {
        Ok(subscriber) => {
            if tracing::subscriber::set_global_default(subscriber).is_err() {
                eprintln!("mcp_server: a log subscriber is already installed");
            }
        }
        Err(error) => {
            eprintln!("mcp_server: {error}");
            return ExitCode::from(2);
        }
    }

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
    if let Some(config) = &settings.traces.export {
        tracing::info!(endpoint = ?config, "traces exported over OTLP/HTTP");
    }
    let code = match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mcp_server: {message}");
            ExitCode::from(2)
        }
    };
    drop(runtime);
    // The spans still queued go out before the process ends.
    if let Some(traces) = traces
        && let Err(error) = traces.shutdown()
    {
        eprintln!("mcp_server: the last traces were not exported: {error}");
    }
    code
}

async fn run(settings: Settings) -> Result<(), String> {
    // `shutdown`: stop accepting and drain; `sessions`: end MCP sessions
    // (after the grace period).
    let shutdown = CancellationToken::new();
    let sessions = CancellationToken::new();
    if let Some(file) = &settings.listen.config_file {
        tracing::info!(file = %file.display(), "settings read from the file, overridden by the environment");
    }
    let auth = server::auth(&settings).map_err(|e| e.to_string())?;
    for warning in &auth.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(token) = &auth.dev_token {
        dev_token::print(token, &auth.resource_url);
    }
    if let Some(jwt) = &auth.jwt
        && let Err(error) = jwt.prefetch().await
    {
        tracing::warn!(%error, "cannot fetch the JWT signing keys yet; will retry on demand");
    }
    let gateway = server::gateway(&settings)
        .await
        .map_err(|e| e.to_string())?;
    // SIGHUP reads the environment and MCP_CONFIG_FILE again.
    let load: server::Loader = std::sync::Arc::new(Settings::perimeter_from_env);
    let (router, reload) =
        server::build(&settings, &sessions, &auth, gateway, load).map_err(|e| e.to_string())?;
    #[cfg(unix)]
    tokio::spawn(
        serving::reload_on_sighup(reload).map_err(|e| format!("cannot listen for SIGHUP: {e}"))?,
    );
    #[cfg(not(unix))]
    drop(reload);
    let listener = serving::bind(&settings).await?;
    if let Some(listener) = serving::bind_metrics(&settings).await? {
        let metrics =
            ops::serve_metrics(&settings, listener, shutdown.clone()).map_err(|e| e.to_string())?;
        tokio::spawn(metrics);
    }
    let signals = serving::cancel_on_signal(shutdown.clone())
        .map_err(|e| format!("cannot listen for signals: {e}"))?;
    tokio::spawn(signals);
    // In-flight requests get as long as one request may take.
    serving::serve_draining(
        listener,
        router,
        shutdown,
        sessions,
        settings.http.request_timeout,
    )
    .await
    .map_err(|e| format!("server failed: {e}"))?;
    tracing::info!("MCP server stopped");
    Ok(())
}
