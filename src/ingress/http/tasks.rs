//! The VCF-compatible tasks routes: `/v1/credentials/tasks` and one task's or
//! subtask's, with retry (PATCH) and cancel (DELETE).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::apidoc::Guarded;
use super::error::ApiError;
use super::paging::{page_params, uuid_param, PageOf};
use super::state::{ApiState, Caller};
use crate::config::Scope;
use crate::engine::control::{self, Change};
use crate::engine::model::TaskStatus;
use crate::engine::view;
use crate::vcf_error::VcfError;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task, retry_task, cancel_task))
        .routes(routes!(get_subtask))
}

/// What `id` is in the task routes.
const TASK_ID: &str = "Task id (a UUID; anything else is answered 400 naming `id`).";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct TaskQuery {
    #[param(value_type = Option<TaskStatus>)]
    status: Option<String>,
    // Not `#[serde(flatten)]`: query strings carry no types, and flatten loses the numbers.
    /// Page number, counted from 0 as VCF does (default 0).
    #[param(minimum = 0, maximum = 1000000, default = 0)]
    page_number: Option<i64>,
    /// Elements per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100, default = 20)]
    page_size: Option<i64>,
    /// The page size when `pageSize` is not given (VCF's clients send it).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

/// List tasks, newest first
///
/// Scope `tasks:view`.
#[utoipa::path(
    get,
    path = "/v1/credentials/tasks",
    operation_id = "listTasks",
    tag = "tasks",
    params(TaskQuery),
    responses(
        (status = 200, description = "A page of tasks.", body = PageOf<view::Task>),
        (status = 400, description = "A bad query parameter, named in `context.field`.", body = VcfError),
        Guarded
    )
)]
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

/// One task
///
/// Scope `tasks:view`.
#[utoipa::path(
    get,
    path = "/v1/credentials/tasks/{id}",
    operation_id = "getTask",
    tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = TASK_ID)),
    responses(
        (status = 200, description = "The task.", body = view::Task),
        (status = 400, description = "`id` is not a UUID.", body = VcfError),
        (status = 404, description = "No such task (`TASK_NOT_FOUND`).", body = VcfError),
        Guarded
    )
)]
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

/// One subtask
///
/// Scope `tasks:view`.
#[utoipa::path(
    get,
    path = "/v1/credentials/tasks/{id}/subtasks/{subtaskId}",
    operation_id = "getSubtask",
    tag = "tasks",
    params(
        ("id" = uuid::Uuid, Path, description = TASK_ID),
        ("subtaskId" = uuid::Uuid, Path, description = "Subtask id (UUID).")
    ),
    responses(
        (status = 200, description = "The subtask.", body = view::SubTask),
        (status = 400, description = "An id is not a UUID.", body = VcfError),
        (status = 404, description = "No such task or subtask.", body = VcfError),
        Guarded
    )
)]
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

/// Retry a FAILED task
///
/// Scope `credentials:manage`. Failed subtasks run again; an UNRESOLVED one resumes where
/// it stopped.
#[utoipa::path(
    patch,
    path = "/v1/credentials/tasks/{id}",
    operation_id = "retryTask",
    tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = TASK_ID)),
    responses(
        (status = 202, description = "Retrying; the task.", body = view::Task),
        (status = 400, description = "`id` is not a UUID.", body = VcfError),
        (status = 404, description = "No such task.", body = VcfError),
        (status = 409, description = "The task is not FAILED (`TASK_STATE_CONFLICT`).", body = VcfError),
        Guarded
    )
)]
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

/// Cancel a task
///
/// Scope `credentials:manage`. Subtasks that have not started become CANCELLED; one past
/// STAGE_PENDING runs to its end.
#[utoipa::path(
    delete,
    path = "/v1/credentials/tasks/{id}",
    operation_id = "cancelTask",
    tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = TASK_ID)),
    responses(
        (status = 202, description = "The task after cancelling.", body = view::Task),
        (status = 400, description = "`id` is not a UUID.", body = VcfError),
        (status = 404, description = "No such task.", body = VcfError),
        (status = 409, description = "The task has already ended (`TASK_STATE_CONFLICT`).", body = VcfError),
        Guarded
    )
)]
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
