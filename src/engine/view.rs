//! The Task JSON of SPEC section 7, read from the database. No password is reachable
//! from here: these queries never touch `credential_versions`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::model::{
    stages_of, stored, Operation, Resolution, Stage, StageStatus, SubtaskStatus, TaskStatus,
};
use crate::access::Requester;
use crate::vcf_error::VcfError;

/// A task (SPEC section 7). Never holds a password.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: TaskStatus,
    pub resolution_status: Resolution,
    pub is_cancellable: bool,
    pub is_retryable: bool,
    pub is_auto_rotate: bool,
    /// Who asked (rotor's extension); absent on tasks recorded before rotor kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub requested_by: Option<Requester>,
    pub creation_timestamp: DateTime<Utc>,
    pub completion_timestamp: Option<DateTime<Utc>>,
    pub errors: Vec<VcfError>,
    pub resources: Vec<Resource>,
    pub sub_tasks: Vec<SubTask>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TaskResource)]
pub struct Resource {
    pub resource_id: String,
    pub name: String,
    pub fqdn: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubTask {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub status: SubtaskStatus,
    // VCF's CredentialsSubTask fields: the account, its type, and its resource's name
    // and type (`entityType`).
    /// The account.
    pub username: String,
    #[schema(schema_with = crate::vocab::credential_type_schema)]
    pub credential_type: String,
    pub resource_name: String,
    /// The resource's type (VCF's entityType).
    pub entity_type: String,
    pub creation_timestamp: DateTime<Utc>,
    pub completion_timestamp: Option<DateTime<Utc>>,
    pub resources: Vec<Resource>,
    pub errors: Vec<VcfError>,
    pub stages: Vec<StageView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Stage)]
pub struct StageView {
    #[schema(value_type = Stage)]
    pub name: String,
    pub description: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: StageStatus,
    pub creation_timestamp: Option<DateTime<Utc>>,
    pub completion_timestamp: Option<DateTime<Utc>>,
    pub errors: Vec<VcfError>,
}

/// The stages of a subtask no worker has started: their rows are written at its first
/// claim, so they are shown from the operation, PENDING (CANCELLED with their subtask).
fn unstarted(
    operation: Operation,
    params: &serde_json::Value,
    subtask: SubtaskStatus,
) -> Vec<StageView> {
    let status = if subtask == SubtaskStatus::Cancelled {
        StageStatus::Cancelled
    } else {
        StageStatus::Pending
    };
    stages_of(operation, params)
        .iter()
        .map(|stage| StageView {
            name: stage.as_str().to_string(),
            description: stage.description().to_string(),
            kind: stage.kind().to_string(),
            status,
            creation_timestamp: None,
            completion_timestamp: None,
            errors: Vec::new(),
        })
        .collect()
}

fn errors(v: serde_json::Value) -> Vec<VcfError> {
    serde_json::from_value(v).unwrap_or_default()
}

pub async fn load(pool: &PgPool, id: Uuid) -> Result<Option<Task>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    load_in(&mut conn, id).await
}

/// The same on a connection, e.g. inside the transaction that records the task.
pub async fn load_in(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Option<Task>, sqlx::Error> {
    Ok(load_many_in(conn, &[id]).await?.pop())
}

/// Several tasks in three queries, in the order of `ids` (an unknown id is left out).
pub async fn load_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Task>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    load_many_in(&mut conn, ids).await
}

pub async fn load_many_in(
    conn: &mut sqlx::PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Task>, sqlx::Error> {
    let tasks = sqlx::query!(
        "SELECT id, name, type, operation, status, resolution_status, is_auto_rotate, errors, created_at, completed_at,
                requested_by_kind, requested_by_name
           FROM tasks WHERE id = ANY($1)",
        ids
    )
    .fetch_all(&mut *conn)
    .await?;
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let found: Vec<Uuid> = tasks.iter().map(|t| t.id).collect();
    let subs = sqlx::query!(
        "SELECT s.id, s.task_id, s.status, s.errors, s.params, s.created_at, s.completed_at, c.username, c.credential_type,
                r.id AS resource_id, r.name AS resource_name, r.type AS resource_type
           FROM subtasks s JOIN credentials c ON c.id = s.credential_id JOIN resources r ON r.id = c.resource_id
          WHERE s.task_id = ANY($1) ORDER BY s.task_id, s.seq",
        &found
    )
    .fetch_all(&mut *conn)
    .await?;
    let stage_rows = sqlx::query!(
        "SELECT st.subtask_id, st.name, st.status, st.started_at, st.completed_at, st.errors
           FROM stages st JOIN subtasks s ON s.id = st.subtask_id
          WHERE s.task_id = ANY($1) ORDER BY st.subtask_id, st.seq",
        &found
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut stages: HashMap<Uuid, Vec<StageView>> = HashMap::new();
    for r in stage_rows {
        let stage: Option<Stage> = r.name.parse().ok();
        stages.entry(r.subtask_id).or_default().push(StageView {
            description: stage
                .map(|s| s.description())
                .unwrap_or_default()
                .to_string(),
            kind: stage.map(|s| s.kind()).unwrap_or_default().to_string(),
            name: r.name,
            status: stored(&r.status),
            creation_timestamp: r.started_at,
            completion_timestamp: r.completed_at,
            errors: errors(r.errors),
        });
    }
    let mut subs_of: HashMap<Uuid, Vec<_>> = HashMap::new();
    for s in subs {
        subs_of.entry(s.task_id).or_default().push(s);
    }
    let mut built: HashMap<Uuid, Task> = HashMap::with_capacity(tasks.len());
    for t in tasks {
        let operation: Operation = stored(&t.operation);
        let verb = operation_verb(operation);
        let mut resources: Vec<Resource> = Vec::new();
        let subs = subs_of.remove(&t.id).unwrap_or_default();
        let mut sub_tasks = Vec::with_capacity(subs.len());
        for s in subs {
            let resource = Resource {
                resource_id: s.resource_id.clone(),
                name: s.resource_name.clone(),
                fqdn: s.resource_name.clone(),
                kind: s.resource_type.clone(),
            };
            if !resources.contains(&resource) {
                resources.push(resource.clone());
            }
            let status: SubtaskStatus = stored(&s.status);
            sub_tasks.push(SubTask {
                id: s.id,
                name: format!("{verb} {}@{}", s.username, s.resource_id),
                description: format!(
                    "{verb} the password of account {} on resource {}",
                    s.username, s.resource_name
                ),
                status,
                credential_type: s.credential_type,
                resource_name: s.resource_name.clone(),
                entity_type: s.resource_type.clone(),
                creation_timestamp: s.created_at,
                completion_timestamp: s.completed_at,
                username: s.username,
                resources: vec![resource],
                errors: errors(s.errors),
                stages: stages
                    .remove(&s.id)
                    .unwrap_or_else(|| unstarted(operation, &s.params, status)),
            });
        }
        let status: TaskStatus = stored(&t.status);
        built.insert(
            t.id,
            Task {
                id: t.id,
                name: t.name,
                kind: t.r#type,
                is_cancellable: !status.is_final()
                    && sub_tasks.iter().any(|s| s.status == SubtaskStatus::Pending),
                // A refused request has no subtask to run again.
                is_retryable: status == TaskStatus::Failed
                    && sub_tasks.iter().any(|s| s.status == SubtaskStatus::Failed),
                status,
                resolution_status: stored(&t.resolution_status),
                is_auto_rotate: t.is_auto_rotate,
                requested_by: t
                    .requested_by_kind
                    .zip(t.requested_by_name)
                    .map(|(kind, name)| Requester {
                        kind: stored(&kind),
                        name,
                    }),
                creation_timestamp: t.created_at,
                completion_timestamp: t.completed_at,
                errors: errors(t.errors),
                resources,
                sub_tasks,
            },
        );
    }
    Ok(ids.iter().filter_map(|id| built.remove(id)).collect())
}

pub fn operation_verb(operation: Operation) -> &'static str {
    match operation {
        Operation::Rotate => "Rotate",
        Operation::Update => "Update",
        Operation::Remediate => "Remediate",
        Operation::UpdateAutoRotatePolicy => "Set auto-rotation of",
        Operation::SetPassword => "Store",
    }
}

/// A page of tasks, newest first.
pub struct Page {
    pub tasks: Vec<Task>,
    pub total: i64,
}

/// Which tasks a caller may see: those it asked for, and those whose every subtask is
/// on a resource matching one of `patterns` (SQL `LIKE`; `%` is every resource).
pub struct Visibility {
    pub patterns: Vec<String>,
    pub requester: Requester,
}

impl Visibility {
    pub fn sees_all(&self) -> bool {
        self.patterns.iter().any(|p| p == "%")
    }
}

/// Whether the caller may see task `id` (see `Visibility`).
pub async fn is_visible(pool: &PgPool, id: Uuid, v: &Visibility) -> Result<bool, sqlx::Error> {
    if v.sees_all() {
        return Ok(true);
    }
    sqlx::query_scalar!(
        r#"SELECT ((t.requested_by_kind = $2 AND t.requested_by_name = $3)
                   OR (EXISTS (SELECT 1 FROM subtasks s WHERE s.task_id = t.id)
                       AND NOT EXISTS (SELECT 1 FROM subtasks s JOIN credentials c ON c.id = s.credential_id
                                        WHERE s.task_id = t.id AND NOT c.resource_id LIKE ANY($4))))  AS "visible!"
             FROM tasks t WHERE t.id = $1"#,
        id,
        v.requester.kind.to_string(),
        v.requester.name,
        &v.patterns
    )
    .fetch_optional(pool)
    .await
    .map(|seen| seen.unwrap_or(false))
}

pub async fn page(
    pool: &PgPool,
    status: Option<TaskStatus>,
    offset: i64,
    page_size: i64,
    v: &Visibility,
) -> Result<Page, sqlx::Error> {
    let status = status.map(TaskStatus::as_str);
    let (all, kind, name) = (
        v.sees_all(),
        v.requester.kind.to_string(),
        &v.requester.name,
    );
    // The filter once: the total and the page's ids come from the same visible set.
    let found = sqlx::query!(
        r#"WITH visible AS (
               SELECT t.id, t.created_at FROM tasks t WHERE ($1::text IS NULL OR status = $1)
                  AND ($2 OR (t.requested_by_kind = $3 AND t.requested_by_name = $4)
                       OR (EXISTS (SELECT 1 FROM subtasks s WHERE s.task_id = t.id)
                           AND NOT EXISTS (SELECT 1 FROM subtasks s JOIN credentials c ON c.id = s.credential_id
                                            WHERE s.task_id = t.id AND NOT c.resource_id LIKE ANY($5)))))
           SELECT (SELECT count(*) FROM visible) AS "total!",
                  array(SELECT id FROM visible ORDER BY created_at DESC, id LIMIT $6 OFFSET $7) AS "ids!""#,
        status,
        all,
        kind,
        name,
        &v.patterns,
        page_size,
        offset
    )
    .fetch_one(pool)
    .await?;
    let (total, ids) = (found.total, found.ids);
    let tasks = load_many(pool, &ids).await?;
    Ok(Page { tasks, total })
}
