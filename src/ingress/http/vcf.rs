//! The VCF-compatible routes: `/v1/credentials` and `/v1/credentials/tasks`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::body::Body;
use super::error::ApiError;
use super::paging::{page_params, text_param, uuid_param, PageOf};
use super::state::{ApiState, Caller};
use crate::config::Scope;
use crate::engine::control::{self, Change};
use crate::engine::model::TaskStatus;
use crate::engine::view;
use crate::ingress::submit::Request;

pub fn routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route(
            "/v1/credentials",
            get(list_credentials).patch(update_credentials),
        )
        .route("/v1/credentials/{id}", get(get_credential))
        .route("/v1/credentials/tasks", get(list_tasks))
        .route(
            "/v1/credentials/tasks/{id}",
            get(get_task).patch(retry_task).delete(cancel_task),
        )
        .route(
            "/v1/credentials/tasks/{id}/subtasks/{subtask_id}",
            get(get_subtask),
        )
}

/// `PATCH /v1/credentials`: the same pipeline as AMQP `credentials.update`. An
/// `Idempotency-Key` header plays the part of the AMQP `message_id`.
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialQuery {
    resource_name: Option<String>,
    resource_ip: Option<String>,
    resource_type: Option<String>,
    /// VCF's workload domain: rotor has none, so a filter on one is refused, not ignored.
    domain_name: Option<String>,
    account_type: Option<String>,
    page_number: Option<i64>,
    page_size: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    id: uuid::Uuid,
    username: String,
    account_type: String,
    credential_type: String,
    resource: CredentialResource,
    auto_rotate_policy: Option<AutoRotate>,
    status: String,
    last_rotated: Option<DateTime<Utc>>,
    creation_timestamp: DateTime<Utc>,
    modification_timestamp: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CredentialResource {
    resource_id: String,
    resource_name: String,
    resource_ip: String,
    resource_type: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct AutoRotate {
    frequency_in_days: i32,
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
        .is_some_and(|t| !["USER", "SYSTEM", "SERVICE"].contains(&t))
    {
        return Err(ApiError::bad_request(
            "accountType",
            "one of USER, SYSTEM, SERVICE",
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

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskQuery {
    status: Option<String>,
    // Not `#[serde(flatten)]`: query strings carry no types, and flatten loses the numbers.
    page_number: Option<i64>,
    page_size: Option<i64>,
    /// VCF's clients ask for the newest `limit` tasks: the page size, when none is given.
    limit: Option<i64>,
}

async fn list_tasks(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    query: Result<Query<TaskQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PageOf<view::Task>>, ApiError> {
    caller.require(Scope::TasksView)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("query", &e.body_text()))?;
    if q.page_size.is_none() && q.limit.is_some_and(|l| !(1..=100).contains(&l)) {
        return Err(ApiError::bad_request("limit", "must be 1 to 100"));
    }
    let page = page_params(q.page_number, q.page_size.or(q.limit))?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<TaskStatus>)
        .transpose()
        .map_err(|_| {
            ApiError::bad_request(
                "status",
                "one of PENDING, IN_PROGRESS, SUCCESSFUL, FAILED, CANCELLED",
            )
        })?;
    let found = view::page(
        &state.pool,
        status,
        page.offset(),
        page.size,
        &caller.visibility(),
    )
    .await
    .map_err(ApiError::from)?;
    Ok(Json(PageOf::new(found.tasks, page, found.total)))
}

/// The task, when the caller may see it (a token limited to some resources sees the
/// tasks it asked for and those on its resources only).
async fn load_task(
    state: &ApiState,
    caller: &Caller,
    id: uuid::Uuid,
) -> Result<view::Task, ApiError> {
    if !view::is_visible(&state.pool, id, &caller.visibility())
        .await
        .map_err(ApiError::from)?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "TASK_NOT_FOUND",
            format!("no task {id}"),
        ));
    }
    view::load(&state.pool, id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "TASK_NOT_FOUND",
                format!("no task {id}"),
            )
        })
}

async fn get_task(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<view::Task>, ApiError> {
    caller.require(Scope::TasksView)?;
    Ok(Json(
        load_task(&state, &caller, uuid_param("id", &id)?).await?,
    ))
}

async fn get_subtask(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path((id, subtask_id)): Path<(String, String)>,
) -> Result<Json<view::SubTask>, ApiError> {
    caller.require(Scope::TasksView)?;
    let task = load_task(&state, &caller, uuid_param("id", &id)?).await?;
    let subtask_id = uuid_param("subtaskId", &subtask_id)?;
    task.sub_tasks
        .into_iter()
        .find(|s| s.id == subtask_id)
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "SUBTASK_NOT_FOUND",
                format!("task {id} has no subtask {subtask_id}"),
            )
        })
}

/// Answers a retry or cancel: 202 with the task, 404 or 409 with why not.
async fn changed(
    state: &ApiState,
    caller: &Caller,
    id: uuid::Uuid,
    change: Change,
) -> Result<(StatusCode, Json<view::Task>), ApiError> {
    match change {
        Change::Done(_) => Ok((
            StatusCode::ACCEPTED,
            Json(load_task(state, caller, id).await?),
        )),
        Change::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "TASK_NOT_FOUND",
            format!("no task {id}"),
        )),
        Change::Conflict(why) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "TASK_STATE_CONFLICT",
            why,
        )),
    }
}

async fn retry_task(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<view::Task>), ApiError> {
    caller.require(Scope::CredentialsManage)?;
    let id = uuid_param("id", &id)?;
    load_task(&state, &caller, id).await?;
    let change = control::retry_task(&state.pool, id)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(caller = %caller.name, task_id = %id, ?change, "retry requested");
    changed(&state, &caller, id, change).await
}

async fn cancel_task(
    caller: Caller,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<view::Task>), ApiError> {
    caller.require(Scope::CredentialsManage)?;
    let id = uuid_param("id", &id)?;
    load_task(&state, &caller, id).await?;
    let change = control::cancel_task(&state.pool, id)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(caller = %caller.name, task_id = %id, ?change, "cancel requested");
    changed(&state, &caller, id, change).await
}
