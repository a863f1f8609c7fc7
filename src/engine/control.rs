//! Tasks as operators and producers act on them: refused requests, idempotency keys,
//! retry and cancel.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::repo::{roll_up, Created, Error, WORK_CHANNEL};
use crate::vcf_error::VcfError;

/// Records a request that was refused: a FAILED task with its error and no subtasks,
/// so the producer's reply names a real task and a redelivery finds it again.
pub async fn record_refused(pool: &PgPool, source: &'static str, request_key: Option<String>, error: &VcfError) -> Result<Created, Error> {
    let task_id = Uuid::new_v4();
    let errors = serde_json::to_value(vec![error]).expect("errors serialize");
    let inserted = sqlx::query_scalar!(
        "INSERT INTO tasks (id, name, type, operation, status, source, request_key, errors, completed_at)
         VALUES ($1, 'Refused request', 'CREDENTIALS_REQUEST', 'ROTATE', 'FAILED', $2, $3, $4, now())
         ON CONFLICT (request_key) DO NOTHING RETURNING id",
        task_id,
        source,
        request_key,
        errors
    )
    .fetch_optional(pool)
    .await?;
    match inserted {
        Some(id) => Ok(Created { task_id: id, is_new: true, recorded: None }),
        None => {
            let id = sqlx::query_scalar!("SELECT id FROM tasks WHERE request_key = $1", request_key).fetch_one(pool).await?;
            Ok(Created { task_id: id, is_new: false, recorded: None })
        }
    }
}

/// The id of the task a request key already made, if any.
pub async fn task_for_key(pool: &PgPool, request_key: &str) -> Result<Option<Uuid>, Error> {
    Ok(sqlx::query_scalar!("SELECT id FROM tasks WHERE request_key = $1", request_key).fetch_optional(pool).await?)
}

#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// Done; the task's new status when it changed.
    Done(Option<String>),
    NotFound,
    /// The task is not in a state that allows it (e.g. retrying a task that did not fail).
    Conflict(String),
}

/// Runs a FAILED task's failed subtasks again. A subtask whose pending password is
/// still in the vault resumes where it stopped; one whose pending was abandoned (or
/// never made) starts over.
pub async fn retry_task(pool: &PgPool, task_id: Uuid) -> Result<Change, Error> {
    let mut tx = pool.begin().await?;
    let Some(status) = sqlx::query_scalar!("SELECT status FROM tasks WHERE id = $1 FOR UPDATE", task_id).fetch_optional(&mut *tx).await? else {
        return Ok(Change::NotFound);
    };
    if status != "FAILED" {
        return Ok(Change::Conflict(format!("only a FAILED task can be retried; this one is {status}")));
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
        return Ok(Change::Conflict("the task has no failed subtask to retry (a refused request cannot be retried)".into()));
    }
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
            sqlx::query!(
                "UPDATE credentials SET lease_subtask = $2, lease_owner = NULL, lease_expires_at = NULL
                  WHERE id = $1 AND lease_subtask IS NULL",
                s.credential_id,
                s.id
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query!("UPDATE tasks SET completed_at = NULL, errors = '[]' WHERE id = $1", task_id).execute(&mut *tx).await?;
    let status = roll_up(&mut tx, task_id).await?;
    sqlx::query!("SELECT pg_notify($1, $2)", WORK_CHANNEL, task_id.to_string()).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Change::Done(status))
}

/// Cancels what has not started: subtasks still PENDING that never stored a pending
/// password become CANCELLED; one past STAGE_PENDING runs to a safe end.
pub async fn cancel_task(pool: &PgPool, task_id: Uuid) -> Result<Change, Error> {
    let mut tx = pool.begin().await?;
    let Some(status) = sqlx::query_scalar!("SELECT status FROM tasks WHERE id = $1 FOR UPDATE", task_id).fetch_optional(&mut *tx).await? else {
        return Ok(Change::NotFound);
    };
    if !matches!(status.as_str(), "PENDING" | "IN_PROGRESS") {
        return Ok(Change::Conflict(format!("the task has already ended ({status})")));
    }
    let cancelled = cancel_unstarted(&mut tx, task_id).await?;
    if !cancelled.is_empty() {
        // A cancelled auto-rotation skips this turn: the next one is a full period away
        // (by this process's clock, as the scheduler judges due-ness).
        sqlx::query!(
            "UPDATE credentials c SET auto_task_id = NULL,
                    next_rotation_at = CASE WHEN c.auto_rotate_days IS NULL THEN NULL ELSE $2::timestamptz + make_interval(days => c.auto_rotate_days) END
              FROM subtasks s WHERE s.id = ANY($1) AND c.id = s.credential_id AND c.auto_task_id = $3",
            &cancelled,
            chrono::Utc::now(),
            task_id
        )
        .execute(&mut *tx)
        .await?;
    }
    let status = roll_up(&mut tx, task_id).await?;
    tx.commit().await?;
    Ok(Change::Done(status))
}

/// Withdraws the credential's planned auto-rotation when it is paused, disabled or found
/// OUT_OF_SYNC: its task is cancelled if the subtask has not started (one already running
/// reaches its safe end), and nothing is planned until the caller plans again.
/// Returns the cancelled task and its new status.
pub async fn withdraw_auto_rotation(conn: &mut PgConnection, credential_id: Uuid) -> Result<Option<(Uuid, Option<String>)>, Error> {
    let Some(task_id) = sqlx::query_scalar!("SELECT auto_task_id FROM credentials WHERE id = $1 FOR UPDATE", credential_id)
        .fetch_optional(&mut *conn)
        .await?
        .flatten()
    else {
        return Ok(None);
    };
    if cancel_unstarted(conn, task_id).await?.is_empty() {
        return Ok(None);
    }
    sqlx::query!("UPDATE credentials SET auto_task_id = NULL, next_rotation_at = NULL WHERE id = $1", credential_id)
        .execute(&mut *conn)
        .await?;
    Ok(Some((task_id, roll_up(conn, task_id).await?)))
}

/// Cancels a task's subtasks that have not started (PENDING, no pending password stored)
/// and releases their credentials; returns them.
async fn cancel_unstarted(conn: &mut PgConnection, task_id: Uuid) -> Result<Vec<Uuid>, Error> {
    let cancelled = sqlx::query_scalar!(
        "UPDATE subtasks s SET status = 'CANCELLED', completed_at = now()
          WHERE s.task_id = $1 AND s.status = 'PENDING'
            AND NOT EXISTS (SELECT 1 FROM stages st WHERE st.subtask_id = s.id AND st.name = 'STAGE_PENDING' AND st.status = 'SUCCESSFUL')
            AND NOT EXISTS (SELECT 1 FROM credential_versions v WHERE v.subtask_id = s.id AND v.state = 'PENDING')
          RETURNING s.id",
        task_id
    )
    .fetch_all(&mut *conn)
    .await?;
    if !cancelled.is_empty() {
        sqlx::query!("UPDATE stages SET status = 'CANCELLED' WHERE subtask_id = ANY($1) AND status = 'PENDING'", &cancelled)
            .execute(&mut *conn)
            .await?;
        sqlx::query!(
            "UPDATE credentials SET lease_subtask = NULL, lease_owner = NULL, lease_expires_at = NULL WHERE lease_subtask = ANY($1)",
            &cancelled
        )
        .execute(&mut *conn)
        .await?;
        // A supplied password no cancelled subtask will use is not kept, even encrypted.
        sqlx::query!("DELETE FROM subtask_secrets WHERE subtask_id = ANY($1)", &cancelled).execute(&mut *conn).await?;
    }
    Ok(cancelled)
}
