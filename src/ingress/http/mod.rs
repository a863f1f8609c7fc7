//! The HTTP API (SPEC section 4): bearer tokens with scopes; VCF-shaped answers on
//! VCF and rotor routes, PrivX-shaped ones on PrivX routes. One file per family;
//! state (tokens, caller), error and paging are what the families share.

mod body;
mod error;
mod ops;
mod paging;
mod privx;
mod resources;
mod serve;
mod state;
mod vcf;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;

pub use error::ApiError;
pub use serve::Listeners;
pub use state::{load_tokens, ApiState, Token};

/// The API's routes; with `with_health`, also /healthz, /readyz and /metrics (when no
/// `ops_listen` serves them).
pub fn router(state: Arc<ApiState>, with_health: bool) -> Router {
    let limit = axum::extract::DefaultBodyLimit::max(state.max_body_bytes);
    let health = if with_health { ops::health_routes() } else { Router::new() };
    Router::new()
        .merge(health)
        .merge(ops::routes())
        .merge(vcf::routes())
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

