//! VCF's expirations routes: `POST /v1/credentials/expirations` starts a check of the
//! targets' password expiry, `GET /v1/credentials/expirations/{id}` answers what it found.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::apidoc::{Guarded, TooLarge};
use super::body::Body;
use super::error::ApiError;
use super::paging::uuid_param;
use super::state::{ApiState, Caller};
use crate::config::Scope;
use crate::engine::expiry::{self, Expirations};
use crate::vcf_error::VcfError;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(get_check))
}

/// VCF's `CredentialsExpirationSpec`: which credentials to check (all the token may see
/// when empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CredentialsExpirationSpec {
    /// Credential ids (UUIDs).
    credential_ids: Option<Vec<String>>,
    /// Only credentials of resources of this type.
    #[schema(min_length = 1)]
    resource_type: Option<String>,
    /// VCF's workload domain. rotor has none: a value is refused with 400.
    domain_name: Option<String>,
}

/// Check password expiry
///
/// Scope `credentials:view`. Reads each selected credential's OS password expiry on its
/// target (`chage -l` through the admin, changing nothing) in the background, and plans
/// an auto-rotation ahead of an expiry that comes first.
#[utoipa::path(
    post,
    path = "/v1/credentials/expirations",
    operation_id = "checkExpirations",
    tag = "credentials",
    request_body = Option<CredentialsExpirationSpec>,
    responses(
        (status = 202, description = "Started: the check, IN_PROGRESS.", body = Expirations, links(
            ("GetExpirations" = (operation_id = "getExpirations", parameters(("id" = "$response.body#/id"))))
        )),
        (status = 400, description = "A bad field, named in `context.field`.", body = VcfError),
        Guarded,
        TooLarge
    )
)]
async fn start(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    body: Body,
) -> Result<(StatusCode, Json<Expirations>), ApiError> {
    caller.require(Scope::CredentialsView)?;
    let spec: CredentialsExpirationSpec =
        body.object(Some(CredentialsExpirationSpec::default()))?;
    if spec.domain_name.is_some() {
        return Err(ApiError::bad_request(
            "domainName",
            "rotor has no workload domains; select by credentialIds or resourceType",
        ));
    }
    if let Some(t) = &spec.resource_type {
        if t.is_empty() || t.contains('\0') {
            return Err(ApiError::bad_request(
                "resourceType",
                "must be a resource type",
            ));
        }
    }
    let ids = spec
        .credential_ids
        .map(|ids| {
            ids.iter()
                .enumerate()
                .map(|(i, id)| uuid_param(&format!("credentialIds[{i}]"), id))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let scope = expiry::Scope {
        credential_ids: ids,
        resource_type: spec.resource_type,
        resource_patterns: caller.grant.resource_patterns(),
    };
    let started = expiry::start(state.engine.clone(), scope, &caller.requester())
        .await
        .map_err(ApiError::from)?;
    tracing::info!(caller = %caller.name, check_id = %started.id, "expiration check started");
    Ok((StatusCode::ACCEPTED, Json(started)))
}

/// One expiration check
///
/// Scope `credentials:view`. The check's status and, per credential, `expiry {expiryDate,
/// lastCheckedDate, connectivityStatus, status}`.
#[utoipa::path(
    get,
    path = "/v1/credentials/expirations/{id}",
    operation_id = "getExpirations",
    tag = "credentials",
    params(("id" = uuid::Uuid, Path, description = "The check's id (UUID).")),
    responses(
        (status = 200, description = "The check.", body = Expirations),
        (status = 400, description = "`id` is not a UUID.", body = VcfError),
        (status = 404, description = "No such check (`EXPIRATION_CHECK_NOT_FOUND`).", body = VcfError),
        Guarded
    )
)]
async fn get_check(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Expirations>, ApiError> {
    caller.require(Scope::CredentialsView)?;
    let id = uuid_param("id", &id)?;
    expiry::load(&state.engine, id, &caller.grant.resource_patterns())
        .await
        .map_err(ApiError::from)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "EXPIRATION_CHECK_NOT_FOUND",
                format!("no expiration check {id}"),
            )
        })
}
