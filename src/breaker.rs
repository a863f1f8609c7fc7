//! The scheduler's breaker (SPEC section 8): when more than `scheduler.breaker_ratio` of
//! the auto-rotations that ended in the last `breaker_window_minutes` failed (and at least
//! `breaker_min_failures` did), auto-rotation pauses everywhere: the tick creates no task,
//! `scheduler.BREAKER_OPEN` is raised and logged on `rotor::security`, until an operator
//! runs `rotor scheduler resume`. Failures from before a resume no longer count.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::access::Requester;
use crate::config::SchedulerSettings;
use crate::engine::{outbox, Error};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Breaker {
    pub open: bool,
    pub opened_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub reason: String,
}

pub async fn status(pool: &PgPool) -> Result<Breaker, Error> {
    let r = sqlx::query!("SELECT open, opened_at, closed_at, reason FROM scheduler_breaker")
        .fetch_one(pool)
        .await?;
    Ok(Breaker {
        open: r.open,
        opened_at: r.opened_at,
        closed_at: r.closed_at,
        reason: r.reason,
    })
}

/// Whether the breaker holds the tick back: it is open, or it opens now because the
/// recent auto-rotations failed past the ratio. One statement reads both. Runs in the
/// tick's transaction, as the tick's leader.
pub async fn holds(conn: &mut PgConnection, settings: &SchedulerSettings) -> Result<bool, Error> {
    let r = sqlx::query!(
        r#"SELECT b.open,
                  count(s.id) FILTER (WHERE s.status = 'FAILED') AS "failed!", count(s.id) AS "ended!"
             FROM scheduler_breaker b
             LEFT JOIN (subtasks s JOIN tasks t ON t.id = s.task_id AND t.is_auto_rotate)
               ON NOT b.open AND s.status IN ('SUCCESSFUL', 'FAILED')
              AND s.completed_at > now() - make_interval(mins => $1)
              AND s.completed_at > COALESCE(b.closed_at, '-infinity')
            GROUP BY b.open"#,
        settings.breaker_window_minutes as i32
    )
    .fetch_one(&mut *conn)
    .await?;
    if r.open {
        return Ok(true);
    }
    if r.failed < i64::from(settings.breaker_min_failures)
        || (r.failed as f64) <= settings.breaker_ratio * r.ended as f64
    {
        return Ok(false);
    }
    let reason = format!(
        "{} of the {} auto-rotations that ended in the last {} minutes failed (over {:.0}%)",
        r.failed,
        r.ended,
        settings.breaker_window_minutes,
        settings.breaker_ratio * 100.0
    );
    // Durable whatever the tick set: a breaker that opened stays open across a crash.
    sqlx::query("SET LOCAL synchronous_commit = on")
        .execute(&mut *conn)
        .await?;
    let opened = sqlx::query!(
        "UPDATE scheduler_breaker SET open = true, opened_at = now(), reason = $1 WHERE NOT open",
        reason
    )
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if opened {
        outbox::scheduler(&mut *conn, "BREAKER_OPEN").await?;
        tracing::error!(target: "rotor::security", reason = %reason,
            "scheduler breaker open: auto-rotation paused everywhere until `rotor scheduler resume`");
    }
    Ok(true)
}

/// Closes the breaker (an operator's resume); false if it was not open.
pub async fn close(pool: &PgPool, who: &Requester) -> Result<bool, Error> {
    let mut tx = pool.begin().await?;
    let closed =
        sqlx::query!("UPDATE scheduler_breaker SET open = false, closed_at = now() WHERE open")
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
    if closed {
        outbox::scheduler(&mut tx, "BREAKER_CLOSED").await?;
        crate::audit::record(
            &mut tx,
            who,
            crate::audit::Action::SchedulerResume,
            None,
            serde_json::json!({}),
        )
        .await?;
    }
    tx.commit().await?;
    if closed {
        tracing::warn!(target: "rotor::security", by = %who.name, "scheduler breaker closed: auto-rotation resumes");
    }
    Ok(closed)
}
