//! Tasks, subtasks and stages in PostgreSQL, which is also the work queue (`lease`
//! claims from it). A worker's writes here run inside its fenced transaction.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::error::Error;
use super::lease::{self, fenced, Claim};
use super::model::{stored, Stage, StageStatus, SubtaskStatus, TaskStatus};
use crate::vcf_error::VcfError;

/// The status of each stage of a subtask, in order.
pub async fn stage_statuses(
    pool: &PgPool,
    subtask_id: Uuid,
) -> Result<Vec<(Stage, StageStatus)>, Error> {
    let rows = sqlx::query!(
        "SELECT name, status FROM stages WHERE subtask_id = $1 ORDER BY seq",
        subtask_id
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (stored(&r.name), stored(&r.status)))
        .collect())
}

pub async fn stage_started(pool: &PgPool, claim: &Claim, stage: Stage) -> Result<(), Error> {
    let mut tx = fenced(pool, claim).await?;
    sqlx::query!(
        "UPDATE stages SET status = 'IN_PROGRESS', started_at = COALESCE(started_at, now())
          WHERE subtask_id = $1 AND name = $2",
        claim.subtask_id,
        stage.as_str()
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Marks a stage SUCCESSFUL or NOT_APPLICABLE inside the caller's fenced transaction.
pub async fn stage_finished(
    conn: &mut PgConnection,
    claim: &Claim,
    stage: Stage,
    status: StageStatus,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE stages SET status = $3, started_at = COALESCE(started_at, now()), completed_at = now()
          WHERE subtask_id = $1 AND name = $2",
        claim.subtask_id,
        stage.as_str(),
        status.as_str()
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ends a subtask (SUCCESSFUL or FAILED), frees the credential and rolls the task up.
pub async fn finish_subtask(
    conn: &mut PgConnection,
    claim: &Claim,
    status: SubtaskStatus,
    failed_stage: Option<(Stage, &VcfError)>,
    unresolved: bool,
) -> Result<Option<TaskStatus>, Error> {
    let errors = match failed_stage {
        Some((stage, error)) => {
            let json = serde_json::to_value(vec![error]).expect("errors serialize");
            sqlx::query!(
                "UPDATE stages SET status = 'FAILED', completed_at = now(), errors = $3
                  WHERE subtask_id = $1 AND name = $2",
                claim.subtask_id,
                stage.as_str(),
                json
            )
            .execute(&mut *conn)
            .await?;
            json
        }
        None => serde_json::json!([]),
    };
    sqlx::query!(
        "UPDATE subtasks SET status = $2, errors = $3, unresolved = $4, completed_at = now(), worker = NULL
          WHERE id = $1",
        claim.subtask_id,
        status.as_str(),
        errors,
        unresolved
    )
    .execute(&mut *conn)
    .await?;
    lease::release(conn, claim).await?;
    roll_up(conn, claim.task_id).await
}

/// A transient failure: the subtask waits `delay_ms` and runs again, keeping the
/// credential reserved (a pending password may be live on the target).
/// `untouched`: the failed attempt certainly changed nothing, so the stage counts as not started.
pub async fn retry_later(
    conn: &mut PgConnection,
    claim: &Claim,
    stage: Stage,
    error: &VcfError,
    delay_ms: i64,
    untouched: bool,
) -> Result<(), Error> {
    let json = serde_json::to_value(vec![error]).expect("errors serialize");
    sqlx::query!(
        "UPDATE stages SET errors = $3, status = CASE WHEN $4 THEN 'PENDING' ELSE status END
          WHERE subtask_id = $1 AND name = $2",
        claim.subtask_id,
        stage.as_str(),
        json,
        untouched
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE subtasks SET status = 'PENDING', worker = NULL,
                not_before = now() + make_interval(secs => $2::float8 / 1000)
          WHERE id = $1",
        claim.subtask_id,
        delay_ms as f64
    )
    .execute(&mut *conn)
    .await?;
    lease::hold_for_retry(conn, claim).await
}

/// Derives the task's status, resolution, errors and completion from its subtasks;
/// returns the new status when it changed.
pub async fn roll_up(conn: &mut PgConnection, task_id: Uuid) -> Result<Option<TaskStatus>, Error> {
    let before = sqlx::query_scalar!("SELECT status FROM tasks WHERE id = $1 FOR UPDATE", task_id)
        .fetch_optional(&mut *conn)
        .await?;
    let after = sqlx::query_scalar!(
        r#"UPDATE tasks t
              SET status = agg.status,
                  resolution_status = CASE WHEN agg.unresolved THEN 'UNRESOLVED' ELSE 'RESOLVED' END,
                  completed_at = CASE WHEN agg.status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED')
                                      THEN COALESCE(t.completed_at, now()) END,
                  errors = agg.errors
             FROM (SELECT CASE
                            WHEN bool_and(status IN ('SUCCESSFUL', 'NOT_APPLICABLE')) THEN 'SUCCESSFUL'
                            WHEN bool_and(status IN ('SUCCESSFUL', 'NOT_APPLICABLE', 'FAILED', 'CANCELLED'))
                              THEN CASE WHEN bool_or(status = 'FAILED') THEN 'FAILED' ELSE 'CANCELLED' END
                            WHEN bool_or(status <> 'PENDING') THEN 'IN_PROGRESS'
                            ELSE 'PENDING'
                          END AS status,
                          bool_or(unresolved) AS unresolved,
                          COALESCE((SELECT jsonb_agg(e ORDER BY s2.seq)
                                      FROM subtasks s2, jsonb_array_elements(s2.errors) e
                                     WHERE s2.task_id = $1 AND s2.status = 'FAILED'), '[]'::jsonb) AS errors
                     FROM subtasks WHERE task_id = $1) agg
            WHERE t.id = $1
            RETURNING t.status"#,
        task_id
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(after
        .filter(|a| before.as_ref() != Some(a))
        .map(|a| stored(&a)))
}

/// Cancels a task's subtasks that have not started (PENDING, no pending password stored)
/// and releases their credentials; returns them.
pub async fn cancel_unstarted(conn: &mut PgConnection, task_id: Uuid) -> Result<Vec<Uuid>, Error> {
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
        lease::release_subtasks(conn, &cancelled).await?;
        super::outbox::subtasks(conn, task_id, SubtaskStatus::Cancelled, cancelled.len()).await?;
        // A supplied password no cancelled subtask will use is not kept, even encrypted.
        sqlx::query!(
            "DELETE FROM subtask_secrets WHERE subtask_id = ANY($1)",
            &cancelled
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(cancelled)
}
