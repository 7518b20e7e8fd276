//! A tonic gRPC server behind the same perimeter as the reference MCP
//! server, configured by the same `MCP_*` variables (or `MCP_CONFIG_FILE`).
//!
//! ```text
//! MCP_JWT_SECRET=$(openssl rand -hex 32) MCP_PORT=50051 \
//!     cargo run --example grpc_server --features tonic
//! grpcurl -plaintext -H "authorization: Bearer $TOKEN" 127.0.0.1:50051 grpc.health.v1.Health/Check
//! ```
//!
//! The service is the standard gRPC health service; put yours in its place.
//! In front of it: `WardenLayer::from_config` (client address, IP lists,
//! client certificate, rate limits, body cap, authentication, `Host`
//! rules), then a circuit breaker around the service
//! (`CIRCUIT_BREAKER_FAILURE_THRESHOLD`, `CIRCUIT_BREAKER_RESET_TIMEOUT`).
//! Refusals reach gRPC clients as statuses they can read: `UNAUTHENTICATED`,
//! `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, `UNAVAILABLE`, with the reason
//! code at the start of the message. A bad setting exits with status 2 and
//! one line naming the variable; SIGTERM stops it gracefully.

use std::net::SocketAddr;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower::ServiceBuilder;
use tower_warden::ConfigError;
use tower_warden::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer};
use tower_warden::config::WardenConfig;
use tower_warden::stack::WardenLayer;

/// The layers in front of the service, and its circuit breaker.
pub struct Perimeter {
    /// Every layer the settings turn on.
    pub warden: WardenLayer,
    /// The breaker around the service (for its state, or to trip it).
    pub breaker: CircuitBreaker,
}

/// The perimeter of `config`.
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
pub fn perimeter(config: &WardenConfig) -> Result<Perimeter, ConfigError> {
    let warden = WardenLayer::from_config(config)?;
    let breaker = CircuitBreaker::builder("grpc-service")
        .failure_threshold(config.circuit_breaker_failure_threshold)
        .reset_timeout(config.circuit_breaker_reset_timeout)
        .build()
        .map_err(|e| e.for_setting("CIRCUIT_BREAKER_FAILURE_THRESHOLD"))?;
    Ok(Perimeter { warden, breaker })
}

/// Serves the health service behind `perimeter` on `incoming` until
/// `shutdown` is cancelled.
///
/// # Errors
///
/// The transport failed.
pub async fn serve(
    perimeter: &Perimeter,
    incoming: TcpIncoming,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let layers = ServiceBuilder::new()
        .layer(perimeter.warden.clone())
        .layer(CircuitBreakerLayer::new(perimeter.breaker.clone()));
    Server::builder()
        .layer(layers)
        .add_service(health)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}

#[allow(dead_code)] // the tests call `perimeter` and `serve`
fn main() -> ExitCode {
    let config = match WardenConfig::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("grpc_server: {error}");
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
    let perimeter = match perimeter(&config) {
        Ok(perimeter) => perimeter,
        Err(error) => {
            eprintln!("grpc_server: {error}");
            return ExitCode::from(2);
        }
    };
    for warning in perimeter.warden.warnings() {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("grpc_server: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let address = format!("{}:{}", config.host, config.port);
        let Ok(address) = address.parse::<SocketAddr>() else {
            eprintln!("grpc_server: MCP_HOST must be an IP address here, not {address}");
            return ExitCode::from(2);
        };
        let incoming = match TcpIncoming::bind(address) {
            Ok(incoming) => incoming,
            Err(error) => {
                eprintln!("grpc_server: cannot listen on {address}: {error}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(%address, "gRPC server listening");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
        #[cfg(unix)]
        {
            let stop = shutdown.clone();
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                tokio::spawn(async move {
                    term.recv().await;
                    stop.cancel();
                });
            }
        }
        match serve(&perimeter, incoming, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("grpc_server: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
