//! Tasks, subtasks and stages in PostgreSQL, which is also the work queue.
//! Every write a worker makes is fenced: it counts only while the worker still holds
//! the credential's lease with the fencing token it was given.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::model::{stages_for, Operation, Stage};
use crate::vault::MasterKey;
use crate::vcf_error::VcfError;

/// The channel workers LISTEN on; intake NOTIFYs it when it adds work.
pub const WORK_CHANNEL: &str = "rotor_work";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the lease on credential {0} was taken over; this worker may no longer write")]
    LostLease(Uuid),
}

/// A request ready to become a task.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub operation: Operation,
    pub name: String,
    pub source: &'static str,
    pub request_key: Option<String>,
    pub is_auto_rotate: bool,
    pub subtasks: Vec<NewSubTask>,
}

/// One credential of a request.
#[derive(Debug, Clone)]
pub struct NewSubTask {
    pub credential_id: Uuid,
    /// A password the request supplies; stored encrypted, bound to the subtask.
    pub password: Option<secrecy::SecretString>,
    pub params: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct Created {
    pub task_id: Uuid,
    /// False when the request key was seen before: this is the first request's task.
    pub is_new: bool,
    /// A new task as recorded (PENDING), read before any worker could start it: what a
    /// reply or an HTTP 202 shows.
    pub recorded: Option<crate::engine::view::Task>,
}

/// Records a task with one subtask per credential and their stages, in one transaction.
pub async fn create_task(pool: &PgPool, key: &MasterKey, new: &NewTask) -> Result<Created, Error> {
    let mut tx = pool.begin().await?;
    let mut created = insert_task(&mut tx, key, new, 0.0).await?;
    if created.is_new {
        created.recorded = crate::engine::view::load_in(&mut tx, created.task_id).await?;
        tx.commit().await?;
    }
    Ok(created)
}

/// The same inside the caller's transaction; `delay_seconds` holds the subtasks back
/// from the database's now (the scheduler spreads a backlog with it).
pub async fn insert_task(tx: &mut PgConnection, key: &MasterKey, new: &NewTask, delay_seconds: f64) -> Result<Created, Error> {
    let task_id = Uuid::new_v4();
    let inserted = sqlx::query_scalar!(
        "INSERT INTO tasks (id, name, type, operation, status, is_auto_rotate, source, request_key)
         VALUES ($1, $2, $3, $4, 'PENDING', $5, $6, $7)
         ON CONFLICT (request_key) DO NOTHING
         RETURNING id",
        task_id,
        new.name,
        format!("CREDENTIALS_{}", new.operation.as_str()),
        new.operation.as_str(),
        new.is_auto_rotate,
        new.source,
        new.request_key
    )
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        let existing = sqlx::query_scalar!("SELECT id FROM tasks WHERE request_key = $1", new.request_key)
            .fetch_one(&mut *tx)
            .await?;
        return Ok(Created { task_id: existing, is_new: false, recorded: None });
    }
    for (seq, sub) in new.subtasks.iter().enumerate() {
        let subtask_id = Uuid::new_v4();
        sqlx::query!(
            "INSERT INTO subtasks (id, task_id, seq, credential_id, status, params, not_before)
             VALUES ($1, $2, $3, $4, 'PENDING', $5, now() + make_interval(secs => $6))",
            subtask_id,
            task_id,
            seq as i32,
            sub.credential_id,
            sub.params,
            delay_seconds
        )
        .execute(&mut *tx)
        .await?;
        let reconcile = sub.params.get("reconcile").and_then(serde_json::Value::as_bool).unwrap_or(false);
        let names: Vec<String> = stages_for(new.operation, reconcile).iter().map(|s| s.as_str().to_string()).collect();
        sqlx::query!(
            "INSERT INTO stages (subtask_id, seq, name, status)
             SELECT $1, ord::int - 1, name, 'PENDING' FROM unnest($2::text[]) WITH ORDINALITY AS s(name, ord)",
            subtask_id,
            &names
        )
        .execute(&mut *tx)
        .await?;
        if let Some(password) = &sub.password {
            crate::vault::versions::put_supplied(&mut *tx, key, subtask_id, password).await.map_err(|e| match e {
                crate::vault::Error::Db(e) => Error::Db(e),
                other => Error::Db(sqlx::Error::Protocol(other.to_string())),
            })?;
        }
    }
    sqlx::query!("SELECT pg_notify($1, $2)", WORK_CHANNEL, task_id.to_string()).execute(&mut *tx).await?;
    Ok(Created { task_id, is_new: true, recorded: None })
}

/// A subtask a worker has claimed, with the lease it holds.
#[derive(Debug, Clone)]
pub struct Claim {
    pub subtask_id: Uuid,
    pub task_id: Uuid,
    pub credential_id: Uuid,
    pub operation: Operation,
    pub fence: i64,
    pub attempts: i32,
    pub params: serde_json::Value,
    /// This claim moved the task from PENDING to IN_PROGRESS.
    pub task_started: bool,
    /// The scheduler made this task (auto-rotation).
    pub is_auto: bool,
}

impl Claim {
    /// REMEDIATE without a password: the admin sets a fresh one.
    pub fn reconcile(&self) -> bool {
        self.params.get("reconcile").and_then(serde_json::Value::as_bool).unwrap_or(false)
    }
}

/// Takes the oldest runnable subtask whose credential is free (or already reserved for
/// it, or whose previous worker's lease expired) and leases the credential.
pub async fn claim(pool: &PgPool, worker: &str, lease_seconds: f64, per_host: i64) -> Result<Option<Claim>, Error> {
    // A claimer that locked the resource row just after another committed a lease on it
    // counted with an older snapshot; it finds out below and tries again.
    for _ in 0..8 {
        if let Some(claim) = try_claim(pool, worker, lease_seconds, per_host).await? {
            return Ok(claim);
        }
    }
    Ok(None)
}

/// One attempt: Some(claim or nothing runnable), or None when the per-host limit turned
/// out to be full once the resource row was locked.
async fn try_claim(pool: &PgPool, worker: &str, lease_seconds: f64, per_host: i64) -> Result<Option<Option<Claim>>, Error> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query!(
        r#"WITH candidate AS (
               SELECT s.id, s.credential_id
                 FROM subtasks s JOIN credentials c ON c.id = s.credential_id JOIN resources r ON r.id = c.resource_id
                WHERE s.status IN ('PENDING', 'IN_PROGRESS')
                  AND s.not_before <= now()
                  AND CASE WHEN c.lease_subtask IS NULL THEN s.status = 'PENDING'
                           WHEN c.lease_subtask = s.id THEN c.lease_expires_at IS NULL OR c.lease_expires_at < now()
                           ELSE false END
                  -- At most per_host live leases on one resource; locking the resource row
                  -- makes concurrent claimers on that host take turns (checked again below).
                  AND (SELECT count(*) FROM credentials c2
                        WHERE c2.resource_id = r.id AND c2.id <> c.id AND c2.lease_expires_at > now()) < $3
                ORDER BY s.not_before, s.created_at
                LIMIT 1
                  FOR UPDATE OF s, c, r SKIP LOCKED
           ), lease AS (
               UPDATE credentials c
                  SET lease_subtask = candidate.id, lease_owner = $1,
                      lease_expires_at = now() + make_interval(secs => $2), lease_fence = c.lease_fence + 1
                 FROM candidate WHERE c.id = candidate.credential_id
                RETURNING c.lease_fence
           )
           UPDATE subtasks s
              SET status = 'IN_PROGRESS', worker = $1, fence = lease.lease_fence, attempts = s.attempts + 1,
                  started_at = COALESCE(s.started_at, now())
             FROM candidate, lease
            WHERE s.id = candidate.id
            RETURNING s.id, s.task_id, s.credential_id, s.fence AS "fence!", s.attempts, s.params,
                      (SELECT operation FROM tasks WHERE id = s.task_id) AS "operation!",
                      (SELECT is_auto_rotate FROM tasks WHERE id = s.task_id) AS "is_auto!",
                      (SELECT resource_id FROM credentials WHERE id = s.credential_id) AS "resource_id!""#,
        worker,
        lease_seconds,
        per_host
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(Some(None));
    };
    // This statement's snapshot is newer than the lock on the resource row: it sees every
    // lease committed on that host, and no other claimer can add one while we hold the lock.
    let live = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM credentials WHERE resource_id = $1 AND id <> $2 AND lease_expires_at > now()"#,
        row.resource_id,
        row.credential_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if live >= per_host {
        tx.rollback().await?;
        return Ok(None);
    }
    let task_started = sqlx::query!("UPDATE tasks SET status = 'IN_PROGRESS' WHERE id = $1 AND status = 'PENDING'", row.task_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        == 1;
    tx.commit().await?;
    Ok(Some(Some(Claim {
        subtask_id: row.id,
        task_id: row.task_id,
        credential_id: row.credential_id,
        operation: row.operation.parse().expect("operation checked by the schema"),
        fence: row.fence,
        attempts: row.attempts,
        params: row.params,
        task_started,
        is_auto: row.is_auto,
    })))
}

/// Expires the leases an earlier run of this instance held (it is dead: we are it).
pub async fn release_stale_leases(pool: &PgPool, instance: &str, me: &str) -> Result<u64, Error> {
    let n = sqlx::query!(
        "UPDATE credentials SET lease_expires_at = now()
          WHERE lease_owner LIKE $1 || '/%' AND lease_owner <> $2 AND lease_expires_at > now()",
        instance,
        me
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n)
}

/// Extends the lease; false when it was taken over.
pub async fn renew_lease(pool: &PgPool, claim: &Claim, lease_seconds: f64) -> Result<bool, Error> {
    let n = sqlx::query!(
        "UPDATE credentials SET lease_expires_at = now() + make_interval(secs => $3)
          WHERE id = $1 AND lease_fence = $2 AND lease_subtask = $4",
        claim.credential_id,
        claim.fence,
        lease_seconds,
        claim.subtask_id
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Opens a transaction that holds the credential row and proves the lease is still ours.
pub async fn fenced(pool: &PgPool, claim: &Claim) -> Result<Transaction<'static, Postgres>, Error> {
    let mut tx = pool.begin().await?;
    let ok = sqlx::query_scalar!(
        "SELECT lease_fence FROM credentials WHERE id = $1 AND lease_subtask = $2 FOR UPDATE",
        claim.credential_id,
        claim.subtask_id
    )
    .fetch_optional(&mut *tx)
    .await?;
    if ok != Some(claim.fence) {
        return Err(Error::LostLease(claim.credential_id));
    }
    Ok(tx)
}

/// The status of each stage of a subtask, in order.
pub async fn stage_statuses(pool: &PgPool, subtask_id: Uuid) -> Result<Vec<(Stage, String)>, Error> {
    let rows = sqlx::query!("SELECT name, status FROM stages WHERE subtask_id = $1 ORDER BY seq", subtask_id)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(|r| (r.name.parse().expect("stage names checked on insert"), r.status)).collect())
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
pub async fn stage_finished(conn: &mut PgConnection, claim: &Claim, stage: Stage, status: &str) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE stages SET status = $3, started_at = COALESCE(started_at, now()), completed_at = now()
          WHERE subtask_id = $1 AND name = $2",
        claim.subtask_id,
        stage.as_str(),
        status
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ends a subtask (SUCCESSFUL or FAILED), frees the credential and rolls the task up.
pub async fn finish_subtask(
    conn: &mut PgConnection,
    claim: &Claim,
    status: &str,
    failed_stage: Option<(Stage, &VcfError)>,
    unresolved: bool,
) -> Result<Option<String>, Error> {
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
        status,
        errors,
        unresolved
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "UPDATE credentials SET lease_subtask = NULL, lease_owner = NULL, lease_expires_at = NULL
          WHERE id = $1 AND lease_subtask = $2",
        claim.credential_id,
        claim.subtask_id
    )
    .execute(&mut *conn)
    .await?;
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
    sqlx::query!(
        "UPDATE credentials SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_subtask = $2",
        claim.credential_id,
        claim.subtask_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Derives the task's status, resolution, errors and completion from its subtasks;
/// returns the new status when it changed.
pub async fn roll_up(conn: &mut PgConnection, task_id: Uuid) -> Result<Option<String>, Error> {
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
    Ok(after.filter(|a| before.as_ref() != Some(a)))
}

