//! Serving: the peer address for the layers, graceful shutdown with a
//! drain, and the signals (SIGTERM/SIGINT to stop, SIGHUP to reload).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_warden::reload::ReloadHandle;

use super::settings::Settings;

/// Listens on `MCP_HOST`:`MCP_PORT`, and says where (warning when the
/// listener reaches beyond loopback while `MCP_ALLOWED_HOSTS` only names
/// loopback).
///
/// # Errors
///
/// The address cannot be bound, as a line for the operator.
pub async fn bind(settings: &Settings) -> Result<TcpListener, String> {
    let listen = &settings.listen;
    let listener = TcpListener::bind((listen.host.as_str(), listen.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", listen.host, listen.port))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    tracing::info!(
        address = %local,
        environment = %settings.warden.environment,
        "MCP server listening on http://{local}/mcp"
    );
    if !local.ip().is_loopback() && listen.loopback_hosts_only {
        tracing::warn!(
            "listening beyond loopback, but MCP_ALLOWED_HOSTS only allows loopback names: \
             requests naming any other host get 403 host_forbidden"
        );
    }
    Ok(listener)
}

/// The listener of `MCP_METRICS_PORT` (on `MCP_HOST`), when it is set.
///
/// # Errors
///
/// The port cannot be bound, as a line for the operator.
pub async fn bind_metrics(settings: &Settings) -> Result<Option<TcpListener>, String> {
    let Some(port) = settings.metrics.port else {
        return Ok(None);
    };
    let host = &settings.listen.host;
    let listener = TcpListener::bind((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot listen on {host}:{port} (MCP_METRICS_PORT): {e}"))?;
    tracing::info!(address = %format!("{host}:{port}"), "metrics at /metrics");
    Ok(Some(listener))
}

/// Copies axum's connect info into a plain `SocketAddr` extension, which the
/// tower-warden layers read whatever their cargo features.
pub async fn peer_address(mut request: Request) -> Request {
    if let Some(ConnectInfo(addr)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        request.extensions_mut().insert(addr);
    }
    request
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits
/// for the open connections to finish; MCP sessions (the token the router
/// was built with) end at once.
///
/// # Errors
///
/// The listener failed.
#[allow(dead_code)] // the integration tests serve through it
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_draining(listener, router, shutdown.clone(), shutdown, Duration::ZERO).await
}

/// Serves `router` on `listener` until `shutdown` is cancelled. Then it
/// accepts no new connection, lets requests in flight finish (a tool call
/// answering on an event stream included), and after `grace` cancels
/// `sessions` (the token the router was built with), which ends the
/// remaining MCP sessions and their idle event streams. It returns once
/// every connection is closed.
///
/// # Errors
///
/// The listener failed.
pub async fn serve_draining(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    sessions: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let ending = sessions.clone();
    let signal = async move {
        shutdown.cancelled().await;
        tracing::info!(
            grace_seconds = grace.as_secs_f64(),
            "draining: no new connections; requests in flight may finish"
        );
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            ending.cancel();
        });
    };
    let served = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal)
    .await;
    sessions.cancel();
    served
}

/// Registers for SIGHUP now, and returns the future that runs `reload` on
/// each one (for ever).
///
/// # Errors
///
/// The signal handler cannot be installed.
#[cfg(unix)]
pub fn reload_on_sighup(
    reload: ReloadHandle,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading IP lists, API keys and the JWKS file");
            // Each failure is logged by the handle; the old settings stay.
            let _ = reload.reload();
        }
    })
}

/// Registers for SIGINT (Ctrl-C) and SIGTERM now, and returns the future
/// that cancels `shutdown` when either arrives.
///
/// # Errors
///
/// The signal handlers cannot be installed.
pub fn cancel_on_signal(
    shutdown: CancellationToken,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    #[cfg(unix)]
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    Ok(async move {
        #[cfg(unix)]
        let which = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        #[cfg(not(unix))]
        let which = match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        };
        tracing::info!(signal = which, "shutting down");
        shutdown.cancel();
    })
}
