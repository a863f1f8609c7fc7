//! The work queue's leases: a worker claims a runnable subtask by leasing its
//! credential, renews the lease while it works, and writes only in transactions that
//! prove the lease (with its fencing token) is still its own.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::error::Error;
use super::model::{stages_of, stored, Operation, SubtaskStatus, TaskStatus};

/// The channel workers LISTEN on; intake NOTIFYs it when it adds work.
pub const WORK_CHANNEL: &str = "rotor_work";

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
        super::model::is_reconcile(&self.params)
    }
}

/// Takes the oldest runnable subtask whose credential is free (or already reserved for
/// it, or whose previous worker's lease expired) and leases the credential. A subtask
/// that connects to its target waits while its resource has `per_host` such leases.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    lease_seconds: f64,
    per_host: i64,
) -> Result<Option<Claim>, Error> {
    // A claimer that chose a host just as others filled it finds out once it holds the
    // resource row, and chooses again.
    for _ in 0..8 {
        if let Some(claim) = try_claim(pool, worker, lease_seconds, per_host).await? {
            return Ok(claim);
        }
    }
    Ok(None)
}

/// One attempt: Some(claim or nothing runnable), or None when the candidate's host turned
/// out to be full (or busy being claimed on for longer than `RESOURCE_WAIT`).
async fn try_claim(
    pool: &PgPool,
    worker: &str,
    lease_seconds: f64,
    per_host: i64,
) -> Result<Option<Option<Claim>>, Error> {
    let off_target: Vec<&str> = Operation::OFF_TARGET.iter().map(|o| o.as_str()).collect();
    let mut tx = pool.begin().await?;
    // The hosts at their limit are read once (credentials_leased), not per candidate; the
    // candidate's own rows are locked, skipping those another claimer or worker holds.
    // NO KEY UPDATE (here and on every credential row a worker holds): what claimers and
    // workers need among themselves, and it leaves alone the KEY SHARE that recording a
    // new subtask takes on its credential (the foreign key) and on its resource.
    let Some(row) = sqlx::query!(
        r#"WITH full_hosts AS (
               SELECT c.resource_id
                 FROM credentials c JOIN subtasks b ON b.id = c.lease_subtask JOIN tasks t ON t.id = b.task_id
                WHERE c.lease_subtask IS NOT NULL AND c.lease_expires_at > now() AND t.operation <> ALL($2)
                GROUP BY c.resource_id HAVING count(*) >= $1
           )
           SELECT s.id, s.task_id, s.credential_id, s.params, c.resource_id, t.operation, t.is_auto_rotate,
                  c.lease_expires_at IS NOT NULL AS "taken_over!"
             FROM subtasks s JOIN credentials c ON c.id = s.credential_id JOIN tasks t ON t.id = s.task_id
            WHERE s.status IN ('PENDING', 'IN_PROGRESS')
              AND s.not_before <= now()
              AND CASE WHEN c.lease_subtask IS NULL THEN s.status = 'PENDING'
                       WHEN c.lease_subtask = s.id THEN c.lease_expires_at IS NULL OR c.lease_expires_at < now()
                       ELSE false END
              AND (t.operation = ANY($2) OR c.resource_id NOT IN (SELECT resource_id FROM full_hosts))
            -- Breadth-first over the tasks recorded together (subtasks_runnable).
            ORDER BY s.not_before, s.seq, s.created_at
            LIMIT 1
              FOR NO KEY UPDATE OF s, c SKIP LOCKED"#,
        per_host,
        &off_target as &[&str]
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        tx.rollback().await?;
        return Ok(Some(None));
    };
    let operation: Operation = stored(&row.operation);
    if operation.touches_target()
        && !host_has_room(
            &mut tx,
            &row.resource_id,
            row.credential_id,
            per_host,
            &off_target,
        )
        .await?
    {
        tx.rollback().await?;
        return Ok(None);
    }
    let (fence, attempts) = sqlx::query!(
        r#"WITH lease AS (
               UPDATE credentials
                  SET lease_subtask = $1, lease_owner = $3,
                      lease_expires_at = now() + make_interval(secs => $4), lease_fence = lease_fence + 1
                WHERE id = $2
                RETURNING lease_fence
           )
           UPDATE subtasks s
              SET status = 'IN_PROGRESS', worker = $3, fence = lease.lease_fence, attempts = s.attempts + 1,
                  started_at = COALESCE(s.started_at, now())
             FROM lease
            WHERE s.id = $1
            RETURNING s.fence AS "fence!", s.attempts"#,
        row.id,
        row.credential_id,
        worker,
        lease_seconds
    )
    .fetch_one(&mut *tx)
    .await
    .map(|r| (r.fence, r.attempts))?;
    let task_started = sqlx::query!(
        "UPDATE tasks SET status = 'IN_PROGRESS' WHERE id = $1 AND status = 'PENDING'",
        row.task_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    // A subtask's stage rows are written when it runs, not with its task, so recording a
    // task writes one row per subtask (view shows unstarted stages alike). Every claim
    // makes sure of them: one by an older rotor (rolling upgrade) would not have.
    let names: Vec<&str> = stages_of(operation, &row.params)
        .iter()
        .map(|s| s.as_str())
        .collect();
    sqlx::query!(
        "INSERT INTO stages (subtask_id, seq, name, status)
         SELECT $1, ord::int - 1, name, 'PENDING' FROM unnest($2::text[]) WITH ORDINALITY AS s(name, ord)
         ON CONFLICT DO NOTHING",
        row.id,
        &names as &[&str]
    )
    .execute(&mut *tx)
    .await?;
    super::outbox::subtask(
        &mut tx,
        row.task_id,
        SubtaskStatus::InProgress,
        task_started.then_some(TaskStatus::InProgress),
    )
    .await?;
    tx.commit().await?;
    if row.taken_over {
        tracing::warn!(subtask_id = %row.id, "took over a subtask whose worker's lease expired");
        crate::metrics::lease_taken_over();
    }
    Ok(Some(Some(Claim {
        subtask_id: row.id,
        task_id: row.task_id,
        credential_id: row.credential_id,
        operation,
        fence,
        attempts,
        params: row.params,
        task_started,
        is_auto: row.is_auto_rotate,
    })))
}

/// How long a claimer waits for another claimer's hold on a resource row; past it, it
/// chooses again (this also breaks any wait cycle through a deleted resource's row).
const RESOURCE_WAIT: &str = "250ms";

/// Holds the resource row, so that claimers on one host take turns, and counts its live
/// leases on the target (this statement's snapshot is newer than the lock: it sees every
/// lease committed on the host, and no other claimer can add one meanwhile).
async fn host_has_room(
    tx: &mut PgConnection,
    resource_id: &str,
    credential_id: Uuid,
    per_host: i64,
    off_target: &[&str],
) -> Result<bool, Error> {
    sqlx::query(&format!("SET LOCAL lock_timeout = '{RESOURCE_WAIT}'"))
        .execute(&mut *tx)
        .await?;
    match sqlx::query!(
        "SELECT 1 AS one FROM resources WHERE id = $1 FOR NO KEY UPDATE",
        resource_id
    )
    .fetch_optional(&mut *tx)
    .await
    {
        Ok(_) => {}
        // lock_not_available: the wait ran out.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    sqlx::query("SET LOCAL lock_timeout = 0")
        .execute(&mut *tx)
        .await?;
    let live = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!"
             FROM credentials c JOIN subtasks b ON b.id = c.lease_subtask JOIN tasks t ON t.id = b.task_id
            WHERE c.resource_id = $1 AND c.id <> $2 AND c.lease_subtask IS NOT NULL AND c.lease_expires_at > now()
              AND t.operation <> ALL($3)"#,
        resource_id,
        credential_id,
        off_target as &[&str]
    )
    .fetch_one(&mut *tx)
    .await?;
    Ok(live < per_host)
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
        "SELECT lease_fence FROM credentials WHERE id = $1 AND lease_subtask = $2 FOR NO KEY UPDATE",
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

/// Frees the credential of a subtask that ended.
pub async fn release(conn: &mut PgConnection, claim: &Claim) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE credentials SET lease_subtask = NULL, lease_owner = NULL, lease_expires_at = NULL
          WHERE id = $1 AND lease_subtask = $2",
        claim.credential_id,
        claim.subtask_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A subtask waiting for its retry keeps its credential reserved (a pending password may
/// be live on the target), with no worker holding it.
pub async fn hold_for_retry(conn: &mut PgConnection, claim: &Claim) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE credentials SET lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_subtask = $2",
        claim.credential_id,
        claim.subtask_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Reserves a free credential for `subtask_id` (an operator's retry of it).
pub async fn reserve(
    conn: &mut PgConnection,
    credential_id: Uuid,
    subtask_id: Uuid,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE credentials SET lease_subtask = $2, lease_owner = NULL, lease_expires_at = NULL
                  WHERE id = $1 AND lease_subtask IS NULL",
        credential_id,
        subtask_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Frees the credentials reserved for these (cancelled) subtasks.
pub async fn release_subtasks(conn: &mut PgConnection, subtasks: &[Uuid]) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE credentials SET lease_subtask = NULL, lease_owner = NULL, lease_expires_at = NULL WHERE lease_subtask = ANY($1)",
        subtasks
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
