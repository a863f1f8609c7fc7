//! Tasks as operators and producers act on them: refused requests, idempotency keys,
//! retry and cancel.

use sqlx::PgPool;
use uuid::Uuid;

use super::error::Error;
use super::lease::{self, WORK_CHANNEL};
use super::lifecycle;
use super::model::{stored, SubtaskStatus, TaskStatus};
use super::outbox;
use super::record::Created;
use super::repo::{cancel_unstarted, roll_up};
use crate::access::Requester;
use crate::vcf_error::VcfError;

/// The task type of a refused request's record.
pub const REFUSED_TYPE: &str = "CREDENTIALS_REQUEST";

/// Records a request that was refused: a FAILED task with its error and no subtasks,
/// so the producer's reply names a real task and a redelivery finds it again.
pub async fn record_refused(
    pool: &PgPool,
    source: &'static str,
    requested_by: &Requester,
    request_key: Option<String>,
    error: &VcfError,
) -> Result<Created, Error> {
    let task_id = Uuid::new_v4();
    let errors = serde_json::to_value(vec![error]).expect("errors serialize");
    let inserted = sqlx::query_scalar!(
        "INSERT INTO tasks (id, name, type, operation, status, source, request_key, errors, completed_at, requested_by_kind, requested_by_name)
         VALUES ($1, 'Refused request', 'CREDENTIALS_REQUEST', 'ROTATE', 'FAILED', $2, $3, $4, now(), $5, $6)
         ON CONFLICT (request_key) WHERE request_key IS NOT NULL DO NOTHING RETURNING id",
        task_id,
        source,
        request_key,
        errors,
        requested_by.kind.to_string(),
        requested_by.name
    )
    .fetch_optional(pool)
    .await?;
    match inserted {
        Some(id) => Ok(Created {
            task_id: id,
            is_new: true,
            recorded: None,
        }),
        None => {
            let id =
                sqlx::query_scalar!("SELECT id FROM tasks WHERE request_key = $1", request_key)
                    .fetch_one(pool)
                    .await?;
            Ok(Created {
                task_id: id,
                is_new: false,
                recorded: None,
            })
        }
    }
}

/// The tasks request keys already made, by key.
pub async fn tasks_for_keys(
    pool: &PgPool,
    keys: &[String],
) -> Result<std::collections::HashMap<String, Uuid>, Error> {
    let rows = sqlx::query!(
        r#"SELECT request_key AS "key!", id FROM tasks WHERE request_key = ANY($1)"#,
        keys
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.key, r.id)).collect())
}

/// The id of the task a request key already made, if any.
pub async fn task_for_key(pool: &PgPool, request_key: &str) -> Result<Option<Uuid>, Error> {
    Ok(
        sqlx::query_scalar!("SELECT id FROM tasks WHERE request_key = $1", request_key)
            .fetch_optional(pool)
            .await?,
    )
}

#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Done; the task's new status when it changed.
    Done(Option<TaskStatus>),
    NotFound,
    /// The task is not in a state that allows it (e.g. retrying a task that did not fail).
    Conflict(String),
}

/// Runs a FAILED task's failed subtasks again. A subtask whose pending password is
/// still in the vault resumes where it stopped; one whose pending was abandoned (or
/// never made) starts over.
pub async fn retry_task(pool: &PgPool, task_id: Uuid) -> Result<Change, Error> {
    let mut tx = pool.begin().await?;
    let Some(status) = task_status(&mut tx, task_id).await? else {
        return Ok(Change::NotFound);
    };
    if status != TaskStatus::Failed {
        return Ok(Change::Conflict(format!(
            "only a FAILED task can be retried; this one is {status}"
        )));
    }
    let subtasks = sqlx::query!(
        r#"SELECT s.id, s.credential_id,
                  EXISTS (SELECT 1 FROM credential_versions v WHERE v.credential_id = s.credential_id
                           AND v.state = 'PENDING' AND v.subtask_id = s.id) AS "has_pending!"
             FROM subtasks s WHERE s.task_id = $1 AND s.status = 'FAILED'"#,
        task_id
    )
    .fetch_all(&mut *tx)
    .await?;
    if subtasks.is_empty() {
        return Ok(Change::Conflict(
            "the task has no failed subtask to retry (a refused request cannot be retried)".into(),
        ));
    }
    let ids: Vec<Uuid> = subtasks.iter().map(|s| s.credential_id).collect();
    // Shares the lock `inventory::retire` takes, as recording a task does.
    let resources = sqlx::query!(
        r#"SELECT r.id, r.deleted_at IS NOT NULL AS "deleted!" FROM credentials c JOIN resources r ON r.id = c.resource_id
            WHERE c.id = ANY($1) FOR KEY SHARE OF r"#,
        &ids
    )
    .fetch_all(&mut *tx)
    .await?;
    if let Some(resource) = resources.into_iter().find(|r| r.deleted).map(|r| r.id) {
        return Ok(Change::Conflict(format!(
            "resource {resource} was deleted; its passwords are kept until `rotor resource purge`"
        )));
    }
    let retried = subtasks.len();
    let runnable = retried.to_string();
    for s in subtasks {
        // With its pending password kept, an APPLY that ran may have set it on the target:
        // APPLY keeps its status so the retry checks that password before changing anything.
        sqlx::query!(
            "UPDATE stages SET completed_at = NULL, errors = '[]',
                    status = CASE WHEN $2 AND name = 'APPLY' AND status <> 'PENDING' THEN status ELSE 'PENDING' END,
                    started_at = CASE WHEN $2 THEN started_at END
              WHERE subtask_id = $1 AND (NOT $2 OR status NOT IN ('SUCCESSFUL', 'NOT_APPLICABLE'))",
            s.id,
            s.has_pending
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE subtasks SET status = 'PENDING', attempts = 0, not_before = now(), errors = '[]', unresolved = false,
                    completed_at = NULL WHERE id = $1",
            s.id
        )
        .execute(&mut *tx)
        .await?;
        if s.has_pending {
            // Keep the credential reserved: the pending password may be live on the target.
            lease::reserve(&mut tx, s.credential_id, s.id).await?;
        }
    }
    sqlx::query!(
        "UPDATE tasks SET completed_at = NULL, errors = '[]' WHERE id = $1",
        task_id
    )
    .execute(&mut *tx)
    .await?;
    let status = roll_up(&mut tx, task_id).await?;
    outbox::subtasks(&mut tx, task_id, SubtaskStatus::Pending, retried).await?;
    if let Some(status) = status {
        outbox::task(&mut tx, task_id, status).await?;
    }
    sqlx::query!("SELECT pg_notify($1, $2)", WORK_CHANNEL, runnable)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Change::Done(status))
}

/// Cancels what has not started: subtasks still PENDING that never stored a pending
/// password become CANCELLED; one past STAGE_PENDING runs to a safe end.
pub async fn cancel_task(pool: &PgPool, task_id: Uuid) -> Result<Change, Error> {
    let mut tx = pool.begin().await?;
    // Subtasks before their task, the order a claim and a finishing subtask take them in:
    // a cancel that came the other way round deadlocked with a claim made at that moment.
    sqlx::query!(
        "SELECT id FROM subtasks WHERE task_id = $1 ORDER BY seq FOR NO KEY UPDATE",
        task_id
    )
    .fetch_all(&mut *tx)
    .await?;
    let Some(status) = task_status(&mut tx, task_id).await? else {
        return Ok(Change::NotFound);
    };
    if status.is_final() {
        return Ok(Change::Conflict(format!(
            "the task has already ended ({status})"
        )));
    }
    let cancelled = cancel_unstarted(&mut tx, task_id).await?;
    if !cancelled.is_empty() {
        // A cancelled auto-rotation skips this turn: the next one is a full period away
        // (by this process's clock, as the scheduler judges due-ness).
        lifecycle::auto_rotations_cancelled(&mut tx, &cancelled, task_id, chrono::Utc::now())
            .await?;
    }
    let status = roll_up(&mut tx, task_id).await?;
    if let Some(status) = status {
        outbox::task(&mut tx, task_id, status).await?;
    }
    tx.commit().await?;
    Ok(Change::Done(status))
}

/// The task's status, its row locked for the caller's transaction.
async fn task_status(
    conn: &mut sqlx::PgConnection,
    task_id: Uuid,
) -> Result<Option<TaskStatus>, Error> {
    let status = sqlx::query_scalar!("SELECT status FROM tasks WHERE id = $1 FOR UPDATE", task_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(status.as_deref().map(stored))
}
