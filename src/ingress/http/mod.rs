//! The HTTP API (SPEC section 4): bearer tokens with scopes; VCF-shaped answers on
//! VCF and rotor routes, PrivX-shaped ones on PrivX routes. One file per family;
//! state (tokens, caller), error and paging are what the families share.

mod body;
mod error;
mod ops;
mod paging;
mod privx;
mod resources;
mod state;
mod vcf;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;

pub use error::ApiError;
pub use state::{load_tokens, ApiState, Token};

pub fn router(state: Arc<ApiState>) -> Router {
    let limit = axum::extract::DefaultBodyLimit::max(state.max_body_bytes);
    Router::new()
        .merge(ops::routes())
        .merge(vcf::routes())
        .merge(privx::routes())
        .merge(resources::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route") })
        .layer(limit)
        .with_state(state)
}

