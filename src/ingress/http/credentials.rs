//! The VCF-compatible credentials routes: `/v1/credentials` (list, and PATCH with a
//! CredentialsUpdateSpec) and `/v1/credentials/{id}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::apidoc::{Guarded, TooLarge};
use super::body::Body;
use super::error::ApiError;
use super::paging::{page_params, text_param, uuid_param, PageOf};
use super::state::{ApiState, Caller};
use crate::config::Scope;
use crate::engine::view;
use crate::ingress::submit::Request;
use crate::requests::CredentialsUpdateSpec;
use crate::vcf_error::VcfError;
use crate::vocab::ACCOUNT_TYPES;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(list_credentials, update_credentials))
        .routes(routes!(get_credential))
}

/// Submit a CredentialsUpdateSpec
///
/// Scope `credentials:manage`. The same pipeline as AMQP `credentials.update`.
#[utoipa::path(
    patch,
    path = "/v1/credentials",
    operation_id = "updateCredentials",
    tag = "credentials",
    params((
        "Idempotency-Key" = Option<String>,
        Header,
        description = "Plays the part of the AMQP `message_id`: a repeat returns the first task."
    )),
    request_body = CredentialsUpdateSpec,
    responses(
        (status = 202, description = "Recorded; the Task (PENDING).", body = view::Task, links(
            ("GetTask" = (operation_id = "getTask", parameters(("id" = "$response.body#/id")))),
            ("RetryTask" = (operation_id = "retryTask", parameters(("id" = "$response.body#/id")))),
            ("CancelTask" = (operation_id = "cancelTask", parameters(("id" = "$response.body#/id")))),
            ("GetSubtask" = (operation_id = "getSubtask", parameters(
                ("id" = "$response.body#/id"),
                ("subtaskId" = "$response.body#/subTasks/0/id")
            )))
        )),
        (status = 400, body = VcfError, description = "Refused, with nothing changed; the \
            error names the field. The refusal is also recorded as a FAILED task."),
        Guarded,
        TooLarge
    )
)]
async fn update_credentials(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<(StatusCode, Json<view::Task>), ApiError> {
    caller.require(Scope::CredentialsManage)?;
    // Keys are kept per token: another caller's key finds nothing of theirs.
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| format!("http:{}:{k}", caller.name));
    let created = state
        .submitter
        .submit(Request::CredentialsUpdate(&body), &caller.origin(key))
        .await
        .map_err(ApiError::refusal)?;
    tracing::info!(caller = %caller.name, task_id = %created.task_id, "credentials update accepted");
    let task = match created.recorded {
        Some(task) => task,
        None => view::load(&state.pool, created.task_id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::internal("task vanished"))?,
    };
    Ok((StatusCode::ACCEPTED, Json(task)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct CredentialQuery {
    /// Only credentials of the resource with this name.
    resource_name: Option<String>,
    /// Only credentials of resources at this address.
    resource_ip: Option<String>,
    /// Only credentials of resources of this type.
    resource_type: Option<String>,
    /// VCF's workload domain. rotor has none: a value is refused with 400 naming
    /// `domainName`.
    domain_name: Option<String>,
    #[param(schema_with = crate::vocab::account_type_schema)]
    account_type: Option<String>,
    /// Page number, counted from 0 as VCF does (default 0).
    #[param(minimum = 0, maximum = 1000000, default = 0)]
    page_number: Option<i64>,
    /// Elements per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100, default = 20)]
    page_size: Option<i64>,
}

/// An account on a resource. Never a password.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    id: uuid::Uuid,
    username: String,
    #[schema(schema_with = crate::vocab::account_type_schema)]
    account_type: String,
    #[schema(schema_with = crate::vocab::credential_type_schema)]
    credential_type: String,
    resource: CredentialResource,
    /// null when the account does not auto-rotate.
    auto_rotate_policy: Option<AutoRotate>,
    /// ACTIVE, or OUT_OF_SYNC when the heartbeat found the stored password no longer logs
    /// in, or UNRESOLVED.
    status: String,
    last_rotated: Option<DateTime<Utc>>,
    creation_timestamp: DateTime<Utc>,
    modification_timestamp: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct CredentialResource {
    resource_id: String,
    resource_name: String,
    resource_ip: String,
    resource_type: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct AutoRotate {
    #[schema(minimum = 1, maximum = 365)]
    frequency_in_days: i32,
    /// null while paused or while an auto-rotation runs.
    next_schedule: Option<DateTime<Utc>>,
}

macro_rules! credential_of {
    ($r:expr) => {
        Credential {
            id: $r.id,
            username: $r.username,
            account_type: $r.account_type,
            credential_type: $r.credential_type,
            resource: CredentialResource {
                resource_id: $r.resource_id,
                resource_name: $r.resource_name,
                resource_ip: $r.resource_ip,
                resource_type: $r.resource_type,
            },
            auto_rotate_policy: $r.auto_rotate_days.map(|d| AutoRotate {
                frequency_in_days: d,
                next_schedule: $r.next_rotation_at.filter(|_| !$r.auto_paused),
            }),
            status: $r.status,
            last_rotated: $r.last_rotated_at,
            creation_timestamp: $r.created_at,
            modification_timestamp: $r.updated_at,
        }
    };
}

/// List credentials
///
/// Scope `credentials:view`.
#[utoipa::path(
    get,
    path = "/v1/credentials",
    operation_id = "listCredentials",
    tag = "credentials",
    params(CredentialQuery),
    responses(
        (status = 200, description = "A page of credentials.", body = PageOf<Credential>),
        (status = 400, description = "A bad query parameter, named in `context.field`.", body = VcfError),
        Guarded
    )
)]
async fn list_credentials(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    query: Result<Query<CredentialQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PageOf<Credential>>, ApiError> {
    caller.require(Scope::CredentialsView)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("query", &e.body_text()))?;
    let page = page_params(q.page_number, q.page_size)?;
    text_param("resourceName", q.resource_name.as_deref())?;
    text_param("resourceType", q.resource_type.as_deref())?;
    text_param("resourceIp", q.resource_ip.as_deref())?;
    if q.domain_name.is_some() {
        return Err(ApiError::bad_request(
            "domainName",
            "rotor has no workload domains; filter by resourceName, resourceIp or resourceType",
        ));
    }
    if q.account_type
        .as_deref()
        .is_some_and(|t| !ACCOUNT_TYPES.contains(&t))
    {
        return Err(ApiError::bad_request(
            "accountType",
            &format!("one of {}", ACCOUNT_TYPES.join(", ")),
        ));
    }
    let rows = sqlx::query!(
        r#"SELECT c.id, c.username, c.account_type, c.credential_type, c.status, c.auto_rotate_days,
                  c.next_rotation_at, c.auto_paused, c.last_rotated_at, c.created_at, c.updated_at, r.id AS resource_id,
                  r.name AS resource_name, r.address AS resource_ip, r.type AS resource_type, count(*) OVER () AS "total!"
             FROM credentials c JOIN resources r ON r.id = c.resource_id
            WHERE ($1::text IS NULL OR r.name = $1) AND ($2::text IS NULL OR r.type = $2)
              AND ($3::text IS NULL OR c.account_type = $3) AND ($7::text IS NULL OR r.address = $7)
              AND r.deleted_at IS NULL AND r.id LIKE ANY($6)
            ORDER BY r.id, c.username LIMIT $4 OFFSET $5"#,
        q.resource_name,
        q.resource_type,
        q.account_type,
        page.size,
        page.offset(),
        &caller.grant.resource_patterns(),
        q.resource_ip
    )
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::from)?;
    let total = match rows.first() {
        Some(r) => r.total,
        None => count_credentials(&state, &q, &caller).await?,
    };
    let elements = rows.into_iter().map(|r| credential_of!(r)).collect();
    Ok(Json(PageOf::new(elements, page, total)))
}

/// The total when the page itself is empty (past the last page).
async fn count_credentials(
    state: &ApiState,
    q: &CredentialQuery,
    caller: &Caller,
) -> Result<i64, ApiError> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM credentials c JOIN resources r ON r.id = c.resource_id
            WHERE ($1::text IS NULL OR r.name = $1) AND ($2::text IS NULL OR r.type = $2)
              AND ($3::text IS NULL OR c.account_type = $3) AND ($5::text IS NULL OR r.address = $5)
              AND r.deleted_at IS NULL AND r.id LIKE ANY($4)"#,
        q.resource_name,
        q.resource_type,
        q.account_type,
        &caller.grant.resource_patterns(),
        q.resource_ip
    )
    .fetch_one(&state.pool)
    .await
    .map_err(ApiError::from)
}

/// One credential
///
/// Scope `credentials:view`.
#[utoipa::path(
    get,
    path = "/v1/credentials/{id}",
    operation_id = "getCredential",
    tag = "credentials",
    params(("id" = uuid::Uuid, Path, description = "Credential id (UUID).")),
    responses(
        (status = 200, description = "The credential.", body = Credential),
        (status = 400, description = "`id` is not a UUID.", body = VcfError),
        (status = 404, description = "No such credential (`CREDENTIAL_NOT_FOUND`).", body = VcfError),
        Guarded
    )
)]
async fn get_credential(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Credential>, ApiError> {
    caller.require(Scope::CredentialsView)?;
    let id = uuid_param("id", &id)?;
    let r = sqlx::query!(
        "SELECT c.id, c.username, c.account_type, c.credential_type, c.status, c.auto_rotate_days,
                c.next_rotation_at, c.auto_paused, c.last_rotated_at, c.created_at, c.updated_at, r.id AS resource_id,
                r.name AS resource_name, r.address AS resource_ip, r.type AS resource_type
           FROM credentials c JOIN resources r ON r.id = c.resource_id WHERE c.id = $1 AND r.deleted_at IS NULL",
        id
    )
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::from)?
    .filter(|r| caller.grant.allows_resource(&r.resource_id))
    .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "CREDENTIAL_NOT_FOUND", format!("no credential {id}")))?;
    Ok(Json(credential_of!(r)))
}
