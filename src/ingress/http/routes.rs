//! The routers: the API's routes (with or without health), and the ops listener's. The
//! OpenAPI document is made from the same route list, so every route served is described.

use std::sync::{Arc, OnceLock};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::apidoc::ApiDoc;
use super::error::ApiError;
use super::state::ApiState;
use super::{
    credentials, deploy, expirations, login, ops, preflight, privx, resources, rotations, tasks,
};

/// Every API route with its description; with `with_health`, also /healthz, /readyz and
/// /metrics (when no `ops_listen` serves them).
fn api(with_health: bool) -> OpenApiRouter<Arc<ApiState>> {
    let health = if with_health {
        ops::health_routes()
    } else {
        OpenApiRouter::new()
    };
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health)
        .routes(routes!(openapi_json))
        .merge(credentials::routes())
        .merge(tasks::routes())
        .merge(login::routes())
        .merge(privx::routes())
        .merge(resources::routes())
        .merge(preflight::routes())
        .merge(expirations::routes())
        .merge(rotations::routes())
        .merge(deploy::routes())
}

/// The OpenAPI document, rendered once. It describes the health routes too: they are on
/// the API listener unless `ops_listen` serves them.
pub fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc =
            serde_json::to_value(api(true).into_openapi()).expect("the document serializes");
        super::apidoc::tidy(&mut doc);
        serde_json::to_string_pretty(&doc).expect("the document serializes")
    })
}

/// This document
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    security(()),
    responses((status = 200, description = "OpenAPI 3.1.", body = Object))
)]
async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route")
}

/// The API's routes; with `with_health`, also /healthz, /readyz and /metrics.
pub fn router(state: Arc<ApiState>, with_health: bool) -> Router {
    let limit = axum::extract::DefaultBodyLimit::max(state.max_body_bytes);
    let (router, _) = api(with_health).split_for_parts();
    router
        .fallback(|| async { not_found() })
        .layer(limit)
        .with_state(state)
}

/// The ops listener's routes: health, readiness and metrics only.
pub fn ops_router(state: Arc<ApiState>) -> Router {
    let (router, _) = ops::health_routes().split_for_parts();
    router.fallback(|| async { not_found() }).with_state(state)
}
