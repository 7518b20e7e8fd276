//! A minimal axum app behind the whole perimeter, configured by the same
//! `MCP_*` variables (or `MCP_CONFIG_FILE`) as the reference server.
//!
//! ```text
//! MCP_JWT_SECRET=$(openssl rand -hex 32) cargo run --example axum_app --features axum
//! curl -H "authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/whoami
//! curl -H "authorization: Bearer $TOKEN" http://127.0.0.1:8000/api/tenants/acme/notes
//! ```
//!
//! `WardenLayer::from_config` puts every layer the settings turn on in
//! front of the routes (client address, IP lists, client certificate, rate
//! limits, body cap, authentication, `Host` rules). Inside it, per route:
//! a tenant route checks the namespace in its path against the caller's
//! (`NamespaceLayer`, `MCP_ADMIN_ROLE` may cross), a write route needs a
//! scope (`RequireLayer`), and a timeout bounds every handler
//! (`MCP_REQUEST_TIMEOUT`). `/health` stays outside, for load balancers.
//! A bad setting exits with status 2 and one line naming the variable.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Extension, Json};
use http::StatusCode;
use serde_json::{Value, json};
use tower_warden::ConfigError;
use tower_warden::auth::RequireLayer;
use tower_warden::config::WardenConfig;
use tower_warden::namespace::NamespaceLayer;
use tower_warden::principal::Principal;
use tower_warden::stack::WardenLayer;

/// The app of `config`: the routes, each behind what it needs, all behind
/// the perimeter.
///
/// # Errors
///
/// A setting the layers cannot use, by variable name.
pub fn app(config: &WardenConfig) -> Result<Router, ConfigError> {
    let warden = WardenLayer::from_config(config)?;
    for warning in warden.warnings() {
        tracing::warn!("{warning}");
    }
    // `/api/tenants/{tenant}/…`: segment 2 is the namespace asked for.
    let tenants = Router::new()
        .route("/api/tenants/{tenant}/notes", get(notes))
        .route(
            "/api/tenants/{tenant}/notes",
            post(add_note).layer(RequireLayer::scopes(["notes:write"])),
        )
        .route_layer(
            NamespaceLayer::new()
                .from_path_segment(2)
                .admin_role(config.admin_role.clone()),
        );
    let api = Router::new()
        .route("/api/whoami", get(whoami))
        .merge(tenants)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            config.request_timeout,
        ))
        .route_layer(warden);
    Ok(api.route("/health", get(|| async { "ok" })))
}

async fn whoami(Extension(principal): Extension<Principal>) -> Json<Value> {
    Json(json!({
        "subject": principal.subject(),
        "namespace": principal.namespace(),
        "scopes": principal.scopes().collect::<Vec<_>>(),
    }))
}

async fn notes(Path(tenant): Path<String>) -> Json<Value> {
    Json(json!({"tenant": tenant, "notes": []}))
}

async fn add_note(Path(tenant): Path<String>, body: String) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CREATED,
        Json(json!({"tenant": tenant, "note": body})),
    )
}

#[allow(dead_code)] // the tests call `app`
fn main() -> ExitCode {
    // Info and above, to standard error.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let built = WardenConfig::from_env().and_then(|config| Ok((app(&config)?, config)));
    let (app, config) = match built {
        Ok(built) => built,
        Err(error) => {
            eprintln!("axum_app: {error}");
            return ExitCode::from(2);
        }
    };
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        eprintln!("axum_app: cannot start the runtime");
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        let address = format!("{}:{}", config.host, config.port);
        let listener = match tokio::net::TcpListener::bind(&address).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("axum_app: cannot listen on {address}: {error}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(%address, "axum app listening");
        // The client address comes from the connection — `ConnectInfo`,
        // read with tower-warden's `axum` feature — and, with
        // MCP_TRUST_X_FORWARDED, from trusted proxies only.
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("axum_app: {error}");
                ExitCode::FAILURE
            }
        }
    })
}
