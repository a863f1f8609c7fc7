//! The one runner (an advisory lock) that moves every RUNNING bulk on: starts its next
//! wave when the last has ended, stops it past the failure budget, finishes it.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{counts, Counts};
use crate::access::Requester;
use crate::engine::model::{Operation, TaskStatus};
use crate::engine::record::{self, NewSubTask, NewTask};
use crate::engine::{control, outbox, Engine, Error};

/// Held by the one process moving bulks on.
const RUNNER_LOCK: i64 = 0x726f_746f_7206; // "rotor" 6

/// Moves every RUNNING bulk on by one step, as the one runner (else does nothing).
async fn step(engine: &Engine) -> Result<(), Error> {
    let mut lock = engine.pool.acquire().await?;
    let runner = sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "ok!""#, RUNNER_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !runner {
        return Ok(());
    }
    let result = step_all(engine).await;
    let _ = sqlx::query!("SELECT pg_advisory_unlock($1)", RUNNER_LOCK)
        .fetch_one(&mut *lock)
        .await;
    result
}

async fn step_all(engine: &Engine) -> Result<(), Error> {
    let running = sqlx::query_scalar!(
        "SELECT id FROM bulk_rotations WHERE status = 'RUNNING' ORDER BY created_at"
    )
    .fetch_all(&engine.pool)
    .await?;
    for id in running {
        if let Err(e) = step_one(engine, id).await {
            tracing::warn!(bulk_id = %id, error = %e, "bulk rotation step failed; the next one tries again");
        }
    }
    Ok(())
}

async fn step_one(engine: &Engine, id: Uuid) -> Result<(), Error> {
    let b = sqlx::query!(
        "SELECT credential_ids, max_failures, max_failure_ratio, requested_by_kind, requested_by_name
           FROM bulk_rotations WHERE id = $1",
        id
    )
    .fetch_one(&engine.pool)
    .await?;
    let c = counts(&engine.pool, id).await?;
    let done = c.succeeded + c.failed;
    let over_ratio = b
        .max_failure_ratio
        .is_some_and(|r| done > 0 && c.failed as f64 / done as f64 > r);
    if c.failed > i64::from(b.max_failures) || (over_ratio && c.failed > 0) {
        return stop(engine, id, &c).await;
    }
    let current = sqlx::query!(
        "SELECT w.number, w.task_id, t.status AS \"status?\" FROM bulk_waves w LEFT JOIN tasks t ON t.id = w.task_id
          WHERE w.bulk_id = $1 AND (w.task_id IS NOT NULL OR w.skipped) ORDER BY w.number DESC LIMIT 1",
        id
    )
    .fetch_optional(&engine.pool)
    .await?;
    let running = current
        .as_ref()
        .is_some_and(|w| matches!(w.status.as_deref(), Some("PENDING") | Some("IN_PROGRESS")));
    if running {
        return Ok(());
    }
    let next_number = current.map_or(1, |w| w.number + 1);
    let next = sqlx::query!(
        "SELECT first, size FROM bulk_waves WHERE bulk_id = $1 AND number = $2",
        id,
        next_number
    )
    .fetch_optional(&engine.pool)
    .await?;
    let Some(next) = next else {
        // Every wave has ended.
        let status = if c.failed == 0 {
            "SUCCESSFUL"
        } else {
            "FAILED"
        };
        let message = format!(
            "{} rotated, {} failed (at most {} allowed), {} cancelled",
            c.succeeded, c.failed, b.max_failures, c.cancelled
        );
        finish(&engine.pool, id, status, &message).await?;
        tracing::info!(bulk_id = %id, status, succeeded = c.succeeded, failed = c.failed, "bulk rotation done");
        return Ok(());
    };
    let ids = &b.credential_ids[next.first as usize..(next.first + next.size) as usize];
    let rows = sqlx::query!(
        "SELECT id, resource_id FROM credentials WHERE id = ANY($1)",
        ids
    )
    .fetch_all(&engine.pool)
    .await?;
    if rows.is_empty() {
        return skip(
            &engine.pool,
            id,
            next_number,
            "its credentials no longer exist",
        )
        .await;
    }
    let who = Requester::new(
        b.requested_by_kind
            .parse()
            .unwrap_or(crate::access::RequesterKind::Token),
        b.requested_by_name,
    );
    let task = NewTask {
        id: Uuid::new_v4(),
        operation: Operation::Rotate,
        name: format!(
            "Bulk rotation {id}, wave {next_number} ({} credentials)",
            rows.len()
        ),
        source: "BULK",
        requested_by: who,
        // A crash between this commit and the next step cannot start the wave twice.
        request_key: Some(format!("bulk:{id}:{next_number}")),
        is_auto_rotate: false,
        subtasks: rows
            .into_iter()
            .map(|r| NewSubTask {
                credential_id: r.id,
                resource_id: r.resource_id,
                password: None,
                params: serde_json::json!({}),
            })
            .collect(),
    };
    let mut tx = engine.pool.begin().await?;
    let created = record::insert_tasks(&mut tx, &engine.key, std::slice::from_ref(&task))
        .await?
        .pop()
        .expect("one outcome per task");
    match created {
        Ok(created) => {
            sqlx::query!(
                "UPDATE bulk_waves SET task_id = $3 WHERE bulk_id = $1 AND number = $2",
                id,
                next_number,
                created.task_id
            )
            .execute(&mut *tx)
            .await?;
            if created.is_new {
                outbox::tasks(&mut tx, &[created.task_id], TaskStatus::Pending).await?;
            }
            tx.commit().await?;
            tracing::info!(bulk_id = %id, wave = next_number, task_id = %created.task_id, "bulk rotation wave started");
        }
        Err(Error::Retired) => {
            tx.rollback().await?;
            skip(
                &engine.pool,
                id,
                next_number,
                "it names a resource deleted meanwhile",
            )
            .await?;
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Past the failure budget: the running wave's unstarted subtasks are cancelled and no
/// later wave starts. The bulk is STOPPED once the subtasks already changing a target
/// have ended (a cancel lets those finish).
async fn stop(engine: &Engine, id: Uuid, c: &Counts) -> Result<(), Error> {
    let running = sqlx::query_scalar!(
        "SELECT w.task_id AS \"task_id!\" FROM bulk_waves w JOIN tasks t ON t.id = w.task_id
          WHERE w.bulk_id = $1 AND t.status IN ('PENDING', 'IN_PROGRESS')",
        id
    )
    .fetch_all(&engine.pool)
    .await?;
    if !running.is_empty() {
        for task in running {
            control::cancel_task(&engine.pool, task).await?;
        }
        sqlx::query!(
            "UPDATE bulk_rotations SET message = $2 WHERE id = $1 AND status = 'RUNNING'",
            id,
            format!(
                "stopping: {} failed, past the budget; what has not started is cancelled",
                c.failed
            )
        )
        .execute(&engine.pool)
        .await?;
        tracing::warn!(target: "rotor::security", bulk_id = %id, failed = c.failed, "bulk rotation stopping: failures past the budget");
        return Ok(());
    }
    let c = counts(&engine.pool, id).await?;
    let unstarted = sqlx::query_scalar!(
        r#"SELECT COALESCE(sum(size), 0)::int8 AS "n!" FROM bulk_waves WHERE bulk_id = $1 AND task_id IS NULL"#,
        id
    )
    .fetch_one(&engine.pool)
    .await?;
    let message = format!(
        "stopped: {} failed, past the budget; {} rotated, {} cancelled, {} never started",
        c.failed, c.succeeded, c.cancelled, unstarted
    );
    finish(&engine.pool, id, "STOPPED", &message).await?;
    tracing::warn!(target: "rotor::security", bulk_id = %id, failed = c.failed, "bulk rotation stopped");
    Ok(())
}

/// A wave with nothing left to rotate is passed over; the next one starts at the next step.
async fn skip(pool: &PgPool, id: Uuid, number: i32, why: &str) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE bulk_waves SET skipped = true WHERE bulk_id = $1 AND number = $2",
        id,
        number
    )
    .execute(pool)
    .await?;
    tracing::warn!(bulk_id = %id, wave = number, why, "bulk rotation wave skipped");
    Ok(())
}

async fn finish(pool: &PgPool, id: Uuid, status: &str, message: &str) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE bulk_rotations SET status = $2, message = $3, completed_at = now() WHERE id = $1 AND status = 'RUNNING'",
        id,
        status,
        message
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Steps every bulk each second until `stop`.
pub async fn run(engine: std::sync::Arc<Engine>, stop: CancellationToken) {
    loop {
        if let Err(e) = step(&engine).await {
            tracing::warn!(error = %e, "bulk rotation runner: a step failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
