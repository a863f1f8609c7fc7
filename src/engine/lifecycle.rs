//! A credential's lifecycle, and its only writer: when it rotates next, pause and
//! resume, out of sync, a rotation recorded, an auto-rotation planned, withdrawn,
//! skipped or failed. "When does this rotate next?" is answered here and nowhere else.
//! Next rotations are planned by this process's clock, as the scheduler judges them
//! due (a daemon under libfaketime sees the future). Leases are the queue's business
//! (`lease`), not the lifecycle's.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::error::Error;
use super::model::CredentialStatus;
use super::repo;
use crate::config::SchedulerSettings;
use crate::schedule::Schedule;
use crate::vault::versions;

/// Plans the next auto-rotation `days` after `last` (none without a frequency), unless
/// an auto-rotation is in flight: its COMMIT plans its own successor.
pub async fn plan_next(
    conn: &mut PgConnection,
    schedule: &Schedule,
    credential_id: Uuid,
    days: Option<i32>,
    last: DateTime<Utc>,
) -> Result<(), Error> {
    let next = days.map(|d| schedule.next(last, d));
    sqlx::query!(
        "UPDATE credentials SET next_rotation_at = $2 WHERE id = $1 AND auto_task_id IS NULL",
        credential_id,
        next
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The resume rule: a credential with a frequency and nothing planned or in flight is
/// due now; one that has a plan keeps it (a passed plan rotates at the next tick).
async fn plan_if_unplanned(
    conn: &mut PgConnection,
    credential_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Error> {
    Ok(sqlx::query_scalar!(
        "UPDATE credentials SET next_rotation_at = CASE WHEN auto_rotate_days IS NULL OR auto_task_id IS NOT NULL THEN next_rotation_at
                                                      ELSE COALESCE(next_rotation_at, $2) END
          WHERE id = $1 RETURNING next_rotation_at",
        credential_id,
        now
    )
    .fetch_one(&mut *conn)
    .await?)
}

/// A rotation committed: PENDING becomes CURRENT, the credential is ACTIVE and in sync,
/// its failure count is cleared and its next auto-rotation planned.
pub async fn record_rotation(
    conn: &mut PgConnection,
    schedule: &Schedule,
    credential_id: Uuid,
    max_versions: i64,
) -> Result<(), Error> {
    versions::promote_pending(conn, credential_id, max_versions).await?;
    let now = Utc::now();
    let c = sqlx::query!(
        "SELECT auto_rotate_days, password_max_days FROM credentials WHERE id = $1",
        credential_id
    )
    .fetch_one(&mut *conn)
    .await?;
    // The new password ages from today: with a maximum age, it expires that many days on,
    // and the next rotation comes before that.
    let expires_on = c
        .password_max_days
        .map(|d| now.date_naive() + chrono::Days::new(u64::try_from(d).unwrap_or(0)));
    let before_expiry = c
        .password_max_days
        .map(|d| now + chrono::Duration::days(i64::from(d)) - schedule.expiry_lead(Some(d)));
    let next = match (
        c.auto_rotate_days.map(|d| schedule.next(now, d)),
        before_expiry,
    ) {
        (Some(planned), Some(limit)) => Some(planned.min(limit)),
        (planned, _) => planned,
    };
    sqlx::query!(
        "UPDATE credentials SET last_rotated_at = $2, updated_at = now(), status = $4, heartbeat_at = $2,
                auto_failures = 0, auto_task_id = NULL, next_rotation_at = $3, password_expires_on = $5
          WHERE id = $1",
        credential_id,
        now,
        next,
        CredentialStatus::Active.as_str(),
        expires_on
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An expiry round tried these credentials, whether or not their hosts answered.
pub async fn expiry_attempted(
    conn: &mut PgConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE credentials SET expiry_checked_at = GREATEST(expiry_checked_at, $2) WHERE id = ANY($1)",
        ids,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What the target's OS said of a credential's password aging. An auto-rotating
/// credential whose password expires before its planned rotation (less the lead of
/// `Schedule::expiry_lead`) is planned earlier: at once when that moment has passed.
pub async fn record_expiry(
    conn: &mut PgConnection,
    schedule: &Schedule,
    credential_id: Uuid,
    expires_on: Option<chrono::NaiveDate>,
    max_days: Option<i32>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let plan = expires_on.map(|day| {
        let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        (midnight - schedule.expiry_lead(max_days)).max(now)
    });
    sqlx::query!(
        "UPDATE credentials SET password_expires_on = $2, password_max_days = $3, expiry_checked_at = $4,
                next_rotation_at = CASE WHEN $5::timestamptz IS NOT NULL AND next_rotation_at IS NOT NULL
                                             AND auto_rotate_days IS NOT NULL AND auto_task_id IS NULL
                                        THEN LEAST(next_rotation_at, $5) ELSE next_rotation_at END
          WHERE id = $1",
        credential_id,
        expires_on,
        max_days,
        now,
        plan
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Someone stored the live password (REMEDIATE, PrivX set-password): the credential is
/// back in sync, and an auto-rotation that stopped after failures is planned again.
pub async fn record_supplied(conn: &mut PgConnection, credential_id: Uuid) -> Result<(), Error> {
    let now = Utc::now();
    sqlx::query!(
        "UPDATE credentials SET status = $3, updated_at = now(), heartbeat_at = $2, auto_failures = 0 WHERE id = $1",
        credential_id,
        now,
        CredentialStatus::Active.as_str()
    )
    .execute(&mut *conn)
    .await?;
    plan_if_unplanned(conn, credential_id, now).await?;
    Ok(())
}

/// UPDATE_AUTO_ROTATE_POLICY: a new frequency (None turns auto-rotation off and
/// withdraws a planned turn). Returns the withdrawn task and its new status.
pub async fn set_frequency(
    conn: &mut PgConnection,
    schedule: &Schedule,
    credential_id: Uuid,
    days: Option<i32>,
) -> Result<(), Error> {
    let last = sqlx::query_scalar!(
        "SELECT last_rotated_at FROM credentials WHERE id = $1",
        credential_id
    )
    .fetch_one(&mut *conn)
    .await?;
    if days.is_none() {
        withdraw_auto_rotation(conn, credential_id).await?;
    }
    sqlx::query!("UPDATE credentials SET auto_rotate_days = $2, auto_failures = 0, updated_at = now() WHERE id = $1", credential_id, days)
        .execute(&mut *conn)
        .await?;
    plan_next(
        conn,
        schedule,
        credential_id,
        days,
        last.unwrap_or_else(Utc::now),
    )
    .await
}

/// Keeps a credential out of auto-rotation until `resume`; a planned turn is withdrawn.
/// Returns its frequency and the withdrawn task.
pub async fn pause(
    conn: &mut PgConnection,
    credential_id: Uuid,
) -> Result<(Option<i32>, Option<Uuid>), Error> {
    let days = sqlx::query_scalar!("UPDATE credentials SET auto_paused = true, updated_at = now() WHERE id = $1 RETURNING auto_rotate_days", credential_id)
        .fetch_one(&mut *conn)
        .await?;
    let withdrawn = withdraw_auto_rotation(conn, credential_id).await?;
    Ok((days, withdrawn))
}

/// What `resume` left: the frequency, the next rotation and the credential's status.
pub struct Resumed {
    pub days: Option<i32>,
    pub next: Option<DateTime<Utc>>,
    pub status: String,
}

/// Auto-rotation runs again, its failure count cleared (the resume rule plans it).
pub async fn resume(
    conn: &mut PgConnection,
    credential_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Resumed, Error> {
    let row = sqlx::query!(
        "UPDATE credentials SET auto_paused = false, auto_failures = 0, updated_at = now() WHERE id = $1 RETURNING auto_rotate_days, status",
        credential_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let next = plan_if_unplanned(conn, credential_id, now).await?;
    Ok(Resumed {
        days: row.auto_rotate_days,
        next,
        status: row.status,
    })
}

/// What is due at `now`, for spreading it: how many credentials, and when there are more
/// than `burst`, how far ahead (seconds from the database's now, at least 0) the last
/// auto-rotation already planned starts.
pub async fn backlog(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    burst: i64,
) -> Result<(i64, f64), Error> {
    let r = sqlx::query!(
        r#"WITH due AS (
               SELECT count(*) AS n FROM credentials
                WHERE next_rotation_at <= $1 AND auto_rotate_days IS NOT NULL AND NOT auto_paused AND status = 'ACTIVE')
           SELECT n AS "due!",
                  CASE WHEN n > $2 THEN
                      (SELECT EXTRACT(EPOCH FROM max(s.not_before) - now())::float8
                         FROM subtasks s JOIN tasks t ON t.id = s.task_id
                        WHERE s.status = 'PENDING' AND t.is_auto_rotate AND s.not_before > now())
                  END AS "ahead"
             FROM due"#,
        now,
        burst
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((r.due, r.ahead.unwrap_or(0.0).max(0.0)))
}

/// An auto-rotation failed: retry with backoff, or after `max_failures` stop (true).
pub async fn auto_rotation_failed(
    conn: &mut PgConnection,
    settings: &SchedulerSettings,
    credential_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let failures = sqlx::query_scalar!(
        "UPDATE credentials SET auto_failures = auto_failures + 1, auto_task_id = NULL WHERE id = $1 RETURNING auto_failures",
        credential_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let stopped = failures >= settings.max_failures;
    let next = if stopped {
        None
    } else {
        let minutes = i64::from(settings.retry_minutes) << (failures - 1).clamp(0, 16);
        Some(now + chrono::Duration::minutes(minutes))
    };
    sqlx::query!(
        "UPDATE credentials SET next_rotation_at = $2 WHERE id = $1",
        credential_id,
        next
    )
    .execute(&mut *conn)
    .await?;
    Ok(stopped)
}

/// Cancelled auto-rotations skip their turn: the next one is a full period away.
pub async fn auto_rotations_cancelled(
    conn: &mut PgConnection,
    subtasks: &[Uuid],
    task_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE credentials c SET auto_task_id = NULL,
                next_rotation_at = CASE WHEN c.auto_rotate_days IS NULL THEN NULL ELSE $2::timestamptz + make_interval(days => c.auto_rotate_days) END
          FROM subtasks s WHERE s.id = ANY($1) AND c.id = s.credential_id AND c.auto_task_id = $3",
        subtasks,
        now,
        task_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Withdraws the credential's planned auto-rotation when it is paused, disabled or found
/// OUT_OF_SYNC: its task is cancelled if the subtask has not started (one already running
/// reaches its safe end), and nothing is planned until the caller plans again.
/// Returns the cancelled task; its events are written here.
pub async fn withdraw_auto_rotation(
    conn: &mut PgConnection,
    credential_id: Uuid,
) -> Result<Option<Uuid>, Error> {
    let Some(task_id) = sqlx::query_scalar!(
        "SELECT auto_task_id FROM credentials WHERE id = $1 FOR NO KEY UPDATE",
        credential_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .flatten() else {
        return Ok(None);
    };
    if repo::cancel_unstarted(conn, task_id).await?.is_empty() {
        return Ok(None);
    }
    sqlx::query!(
        "UPDATE credentials SET auto_task_id = NULL, next_rotation_at = NULL WHERE id = $1",
        credential_id
    )
    .execute(&mut *conn)
    .await?;
    if let Some(status) = repo::roll_up(conn, task_id).await? {
        super::outbox::task(conn, task_id, status).await?;
    }
    Ok(Some(task_id))
}

/// The resource's accounts are retired with it: no more rotations or heartbeats, and
/// nothing planned. The caller has checked that none has work in flight.
pub async fn retire_resource(conn: &mut PgConnection, resource_id: &str) -> Result<u64, Error> {
    Ok(sqlx::query!(
        "UPDATE credentials SET status = $2, next_rotation_at = NULL, auto_task_id = NULL, updated_at = now() WHERE resource_id = $1",
        resource_id,
        CredentialStatus::Retired.as_str()
    )
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// The heartbeat found the stored password refused: OUT_OF_SYNC, if no rotation touched
/// the credential meanwhile (same current version, no lease, nothing pending), and its
/// planned turn withdrawn. Returns whether it was marked.
pub async fn mark_out_of_sync(
    conn: &mut PgConnection,
    credential_id: Uuid,
    version: i32,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let n = sqlx::query!(
        "UPDATE credentials c SET status = $4, heartbeat_at = $3, updated_at = now()
          WHERE c.id = $1 AND c.lease_subtask IS NULL
            AND EXISTS (SELECT 1 FROM credential_versions v WHERE v.credential_id = c.id AND v.state = 'CURRENT' AND v.version = $2)
            AND NOT EXISTS (SELECT 1 FROM credential_versions v WHERE v.credential_id = c.id AND v.state = 'PENDING')",
        credential_id,
        version,
        now,
        CredentialStatus::OutOfSync.as_str()
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    // Never rotated automatically until remediated, so a planned turn goes too.
    withdraw_auto_rotation(conn, credential_id).await?;
    Ok(true)
}

/// The heartbeat looked at the credential (whatever it found).
pub async fn heartbeat_checked(
    conn: &mut PgConnection,
    credential_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    sqlx::query!(
        "UPDATE credentials SET heartbeat_at = $2 WHERE id = $1",
        credential_id,
        now
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
