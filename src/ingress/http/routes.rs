//! The routers: the API's routes (with or without health), and the ops listener's.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;

use super::error::ApiError;
use super::state::ApiState;
use super::{login, ops, privx, resources, vcf};

/// The API's routes; with `with_health`, also /healthz, /readyz and /metrics (when no
/// `ops_listen` serves them).
pub fn router(state: Arc<ApiState>, with_health: bool) -> Router {
    let limit = axum::extract::DefaultBodyLimit::max(state.max_body_bytes);
    let health = if with_health {
        ops::health_routes()
    } else {
        Router::new()
    };
    Router::new()
        .merge(health)
        .merge(ops::routes())
        .merge(vcf::routes())
        .merge(login::routes())
        .merge(privx::routes())
        .merge(resources::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
        .layer(limit)
        .with_state(state)
}

/// The ops listener's routes: health, readiness and metrics only.
pub fn ops_router(state: Arc<ApiState>) -> Router {
    ops::health_routes()
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
        .with_state(state)
}
