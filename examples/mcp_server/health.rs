//! `GET /health` (anyone: aggregates only) and the process view that the
//! admin page `/status` shows (`ops::status_routes` serves it).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use tower_warden::circuit_breaker::BreakerState;
use tower_warden::stack::RateLimitInfo;

use super::gateway::Gateway;

/// What `/health` reads.
pub struct HealthState {
    /// When the server started.
    pub started: Instant,
    /// The rate limiter's state.
    pub limits: RateLimitInfo,
    /// The upstreams, for their breakers.
    pub gateway: Arc<Gateway>,
}

/// The limiter's state for `/health`.
fn limits_json(limits: &RateLimitInfo) -> serde_json::Value {
    if !limits.enabled() {
        return serde_json::json!({"enabled": false});
    }
    serde_json::json!({
        "enabled": true,
        "storage": limits.storage(),
        "degraded": limits.is_degraded(),
    })
}

/// `GET /health`: always 200 while the process serves; `status` is
/// `degraded` while the rate limiter decides without Redis (each instance
/// then limits on its own).
pub async fn health(State(state): State<Arc<HealthState>>) -> Json<serde_json::Value> {
    Json(health_json(&state))
}

/// `/health`'s document: aggregates only, since anyone may read it. The
/// upstream breakers are counted by state; which connection is in which
/// state (connection ids belong to tenants) is on `/status`.
fn health_json(state: &HealthState) -> serde_json::Value {
    let status = if state.limits.is_degraded() {
        "degraded"
    } else {
        "healthy"
    };
    let (mut closed, mut half_open, mut open) = (0u64, 0u64, 0u64);
    for (_, breaker) in state.gateway.upstreams.states() {
        match breaker {
            BreakerState::Closed => closed += 1,
            BreakerState::HalfOpen => half_open += 1,
            // Open, or a state this server does not know: not serving.
            _ => open += 1,
        }
    }
    serde_json::json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "rate_limit": limits_json(&state.limits),
        "upstreams": {
            "total": closed + half_open + open,
            "closed": closed,
            "half_open": half_open,
            "open": open,
        },
    })
}

/// `/status`'s view of the process (admins only): `/health`'s document
/// plus each upstream connection's breaker, by connection id.
pub fn status_json(state: &HealthState) -> serde_json::Value {
    let mut document = health_json(state);
    if let Some(object) = document.as_object_mut() {
        object.insert(
            "connections".to_owned(),
            state
                .gateway
                .upstreams
                .states()
                .into_iter()
                .map(|(id, breaker)| {
                    serde_json::json!({"connection_id": id, "breaker": breaker_json(&breaker)})
                })
                .collect(),
        );
    }
    document
}

/// A breaker's state for `/status`.
fn breaker_json(state: &BreakerState) -> serde_json::Value {
    match state {
        BreakerState::Open { retry_after } => serde_json::json!({
            "state": state.as_str(),
            "retry_after_ms": u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
        }),
        _ => serde_json::json!({ "state": state.as_str() }),
    }
}
