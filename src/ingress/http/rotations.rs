//! Bulk rotation: `POST /v1/rotations` plans a canary and growing waves, `GET
//! /v1/rotations/{id}` follows them (the waves, their tasks, the counts and the status).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::apidoc::{Guarded, TooLarge};
use super::body::Body;
use super::error::ApiError;
use super::paging::uuid_param;
use super::state::{ApiState, Caller};
use crate::bulk::{self, Bulk, BulkSpec, Refused};
use crate::config::Scope;
use crate::vcf_error::VcfError;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(get_bulk))
}

/// Start a bulk rotation
///
/// Scope `credentials:manage`. Rotates the ACTIVE credentials of the resources the globs
/// name (within the token's own `resources`) in waves: a canary of `canary`, then waves
/// twice as large, each spread over the hosts. More than `maxFailures` failures (or a
/// share above `maxFailureRatio`) stop it: what has not started is cancelled.
#[utoipa::path(
    post,
    path = "/v1/rotations",
    operation_id = "startBulkRotation",
    tag = "credentials",
    request_body = BulkSpec,
    responses(
        (status = 202, description = "Planned and RUNNING.", body = Bulk, links(
            ("GetBulkRotation" = (operation_id = "getBulkRotation", parameters(("id" = "$response.body#/id"))))
        )),
        (status = 400, description = "A bad field, named in `context.field`; or nothing matches.", body = VcfError),
        Guarded,
        TooLarge
    )
)]
async fn start(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    body: Body,
) -> Result<(StatusCode, Json<Bulk>), ApiError> {
    caller.require(Scope::CredentialsManage)?;
    let spec: BulkSpec = body.object(None)?;
    let created = bulk::create(
        &state.pool,
        spec,
        &caller.requester(),
        &caller.grant.resource_patterns(),
    )
    .await
    .map_err(|e| match e {
        Refused::Invalid { field, message } => ApiError::bad_request(&field, &message),
        Refused::Store(e) => ApiError::from(e),
    })?;
    tracing::info!(caller = %caller.name, bulk_id = %created.id, total = created.total, "bulk rotation started");
    Ok((StatusCode::ACCEPTED, Json(created)))
}

/// One bulk rotation
///
/// Scope `tasks:view`. A token limited to some resources sees the bulks it started.
#[utoipa::path(
    get,
    path = "/v1/rotations/{id}",
    operation_id = "getBulkRotation",
    tag = "credentials",
    params(("id" = uuid::Uuid, Path, description = "The bulk's id (UUID).")),
    responses(
        (status = 200, description = "The bulk: status RUNNING, SUCCESSFUL, FAILED or STOPPED, its waves and counts.", body = Bulk),
        (status = 400, description = "`id` is not a UUID.", body = VcfError),
        (status = 404, description = "No such bulk rotation (`BULK_ROTATION_NOT_FOUND`).", body = VcfError),
        Guarded
    )
)]
async fn get_bulk(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Bulk>, ApiError> {
    caller.require(Scope::TasksView)?;
    let id = uuid_param("id", &id)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "BULK_ROTATION_NOT_FOUND",
            format!("no bulk rotation {id}"),
        )
    };
    let found = bulk::load(&state.pool, id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(not_found)?;
    let unlimited = caller.grant.resource_patterns() == ["%"];
    if !unlimited
        && !bulk::started_by(&state.pool, id, &caller.requester())
            .await
            .map_err(ApiError::from)?
    {
        return Err(not_found());
    }
    Ok(Json(found))
}
