//! Auto-rotation every `frequencyInDays`, and the heartbeat.
//!
//! Each tick, the one instance holding an advisory lock turns due credentials (by this
//! process's clock, so a daemon under libfaketime sees the future) into ROTATE tasks with
//! `isAutoRotate = true`, a bounded batch at a time. A backlog larger than `burst` is
//! spread over `catch_up_seconds`. The heartbeat logs in with stored current passwords
//! and marks a credential whose password changed behind rotor's back OUT_OF_SYNC; the
//! scheduler never rotates such a credential until REMEDIATE clears it.

use std::sync::Arc;
use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use rand::{Rng, TryRngCore};
use sqlx::PgPool;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::{self, SchedulerSettings};
use crate::engine::model::Operation;
use crate::engine::repo::{self, NewSubTask, NewTask};
use crate::engine::Engine;
use crate::target::Login;

const TICK_LOCK: i64 = 0x726f_746f_7201; // "rotor" 1
const HEARTBEAT_LOCK: i64 = 0x726f_746f_7202;

/// When the next rotation of a credential falls: `frequencyInDays` after the last one,
/// plus jitter, moved into the allowed window.
#[derive(Debug, Clone)]
pub struct Schedule {
    jitter_minutes: u32,
    window: Option<(NaiveTime, NaiveTime)>,
    tz: Tz,
}

impl Schedule {
    pub fn from_settings(s: &SchedulerSettings) -> Result<Self, config::Error> {
        let tz: Tz = s.timezone.parse().map_err(|_| config::Error::invalid("scheduler.timezone", format!("unknown time zone `{}`", s.timezone)))?;
        let window = match &s.window {
            None => None,
            Some(w) => {
                let bad = || config::Error::invalid("scheduler.window", format!("`{w}`: expected \"HH:MM-HH:MM\""));
                let (a, b) = w.split_once('-').ok_or_else(bad)?;
                let start = NaiveTime::parse_from_str(a.trim(), "%H:%M").map_err(|_| bad())?;
                let end = NaiveTime::parse_from_str(b.trim(), "%H:%M").map_err(|_| bad())?;
                if start == end {
                    return Err(config::Error::invalid("scheduler.window", "start and end are equal"));
                }
                Some((start, end))
            }
        };
        Ok(Schedule { jitter_minutes: s.jitter_minutes, window, tz })
    }

    pub fn next(&self, last: DateTime<Utc>, days: i32) -> DateTime<Utc> {
        let mut rng = rand::rngs::OsRng.unwrap_err();
        let jitter = if self.jitter_minutes == 0 { 0 } else { rng.random_range(0..i64::from(self.jitter_minutes) * 60) };
        let t = last + chrono::Duration::days(i64::from(days)) + chrono::Duration::seconds(jitter);
        self.into_window(t, &mut rng)
    }

    /// Whether `t` falls in the allowed window (always, without one).
    pub fn inside_window(&self, t: DateTime<Utc>) -> bool {
        let Some((start, end)) = self.window else { return true };
        let time = t.with_timezone(&self.tz).time();
        if start < end {
            time >= start && time < end
        } else {
            time >= start || time < end
        }
    }

    /// `t` itself when inside the window, else a uniformly drawn moment of the next window.
    fn into_window(&self, t: DateTime<Utc>, rng: &mut impl Rng) -> DateTime<Utc> {
        let Some((start, end)) = self.window else { return t };
        if self.inside_window(t) {
            return t;
        }
        let local = t.with_timezone(&self.tz);
        let mut day = local.date_naive();
        if local.time() >= start {
            day = day.succ_opt().unwrap_or(day);
        }
        // A start that falls in a DST gap (02:30 on the night clocks jump to 03:00) does
        // not exist that day: the window opens at the first local minute that does.
        let opens = (0..=180)
            .find_map(|m| self.tz.from_local_datetime(&(day.and_time(start) + chrono::Duration::minutes(m))).earliest())
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or(t);
        let length = if start < end { end - start } else { chrono::Duration::days(1) - (start - end) };
        opens + chrono::Duration::seconds(rng.random_range(0..length.num_seconds().max(1)))
    }
}

pub struct Scheduler {
    pub engine: Arc<Engine>,
    pub settings: SchedulerSettings,
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub leader: bool,
    pub due: i64,
    pub created: usize,
}

impl Scheduler {
    fn pool(&self) -> &PgPool {
        &self.engine.pool
    }

    /// One tick at `now` (this process's clock).
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Tick, repo::Error> {
        let mut tx = self.pool().begin().await?;
        let leader = sqlx::query_scalar!(r#"SELECT pg_try_advisory_xact_lock($1) AS "ok!""#, TICK_LOCK).fetch_one(&mut *tx).await?;
        if !leader {
            return Ok(Tick::default());
        }
        let due = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM credentials
                WHERE next_rotation_at <= $1 AND auto_rotate_days IS NOT NULL AND NOT auto_paused AND status = 'ACTIVE'"#,
            now
        )
        .fetch_one(&mut *tx)
        .await?;
        // Outside the allowed window nothing starts, whatever planned it (a catch-up after
        // a downtime, a retry after a failure, a resume).
        if due == 0 || !self.engine.schedule.inside_window(now) {
            tx.commit().await?;
            return Ok(Tick { leader, due, created: 0 });
        }
        let rows = sqlx::query!(
            "SELECT c.id, c.username, c.resource_id, c.next_rotation_at AS \"next!\" FROM credentials c
              WHERE c.next_rotation_at <= $1 AND c.auto_rotate_days IS NOT NULL AND NOT c.auto_paused AND c.status = 'ACTIVE'
              ORDER BY c.next_rotation_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            now,
            self.settings.batch
        )
        .fetch_all(&mut *tx)
        .await?;
        // A backlog is spread: starts follow the last one already planned, evenly over
        // what is left of catch_up_seconds. Delays are relative, so the database's clock
        // and this process's may differ (libfaketime in the tests).
        let (mut delay, spacing) = if due > self.settings.burst {
            let planned = sqlx::query_scalar!(
                r#"SELECT EXTRACT(EPOCH FROM max(s.not_before) - now())::float8 AS "ahead"
                     FROM subtasks s JOIN tasks t ON t.id = s.task_id
                    WHERE s.status = 'PENDING' AND t.is_auto_rotate AND s.not_before > now()"#
            )
            .fetch_one(&mut *tx)
            .await?
            .unwrap_or(0.0)
            .max(0.0);
            let left = (self.settings.catch_up_seconds as f64 - planned).max(self.settings.catch_up_seconds as f64 / 10.0);
            (planned, left / due as f64)
        } else {
            (0.0, 0.0)
        };
        let created = rows.len();
        for r in rows {
            let task = NewTask {
                operation: Operation::Rotate,
                name: format!("Auto-rotate password of {}@{}", r.username, r.resource_id),
                source: "SCHEDULER",
                // No key: the lock and this transaction already make it once per due
                // credential, and a key made of the planned time could name an older task.
                request_key: None,
                is_auto_rotate: true,
                subtasks: vec![NewSubTask { credential_id: r.id, password: None, params: serde_json::json!({}) }],
            };
            let created = repo::insert_task(&mut tx, &self.engine.key, &task, delay).await?;
            sqlx::query!("UPDATE credentials SET next_rotation_at = NULL, auto_task_id = $2 WHERE id = $1", r.id, created.task_id)
                .execute(&mut *tx)
                .await?;
            if created.is_new {
                self.engine.events.task(created.task_id, "PENDING");
            }
            delay += spacing;
        }
        sqlx::query!("SELECT pg_notify($1, 'scheduler')", repo::WORK_CHANNEL).execute(&mut *tx).await?;
        tx.commit().await?;
        if created > 0 {
            tracing::info!(due, created, "auto-rotations scheduled");
        }
        Ok(Tick { leader, due, created })
    }

    /// Checks up to `heartbeat_batch` stored current passwords against their targets.
    pub async fn heartbeat(&self, now: DateTime<Utc>) -> Result<(usize, usize), repo::Error> {
        let mut lock = self.pool().acquire().await?;
        let leader = sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "ok!""#, HEARTBEAT_LOCK).fetch_one(&mut *lock).await?;
        if !leader {
            return Ok((0, 0));
        }
        let result = self.heartbeat_as_leader(now).await;
        let _ = sqlx::query!("SELECT pg_advisory_unlock($1)", HEARTBEAT_LOCK).fetch_one(&mut *lock).await;
        result
    }

    async fn heartbeat_as_leader(&self, now: DateTime<Utc>) -> Result<(usize, usize), repo::Error> {
        let since = now - chrono::Duration::hours(i64::from(self.settings.heartbeat_hours));
        let ids = sqlx::query_scalar!(
            "SELECT c.id FROM credentials c
              WHERE c.status = 'ACTIVE' AND c.lease_subtask IS NULL AND (c.heartbeat_at IS NULL OR c.heartbeat_at < $1)
                AND EXISTS (SELECT 1 FROM credential_versions v WHERE v.credential_id = c.id AND v.state = 'CURRENT')
              ORDER BY c.heartbeat_at NULLS FIRST LIMIT $2",
            since,
            self.settings.heartbeat_batch
        )
        .fetch_all(self.pool())
        .await?;
        let mut drifted = 0;
        for id in &ids {
            match crate::engine::check_current(&self.engine, *id).await {
                Ok(Some((version, Login::Refused))) => {
                    // Only if no rotation touched it meanwhile: same current version, no lease, nothing pending.
                    let mut tx = self.pool().begin().await?;
                    let n = sqlx::query!(
                        "UPDATE credentials c SET status = 'OUT_OF_SYNC', heartbeat_at = $3, updated_at = now()
                          WHERE c.id = $1 AND c.lease_subtask IS NULL
                            AND EXISTS (SELECT 1 FROM credential_versions v WHERE v.credential_id = c.id AND v.state = 'CURRENT' AND v.version = $2)
                            AND NOT EXISTS (SELECT 1 FROM credential_versions v WHERE v.credential_id = c.id AND v.state = 'PENDING')",
                        id,
                        version,
                        now
                    )
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    // Never rotated automatically until remediated, so a planned turn goes too.
                    let withdrawn = if n == 1 { crate::engine::control::withdraw_auto_rotation(&mut tx, *id).await? } else { None };
                    tx.commit().await?;
                    if let Some((task_id, Some(status))) = withdrawn {
                        self.engine.events.task(task_id, &status);
                    }
                    if n == 1 {
                        drifted += 1;
                        tracing::warn!(target: "rotor::security", credential_id = %id,
                            "heartbeat: the stored password no longer logs in; marked OUT_OF_SYNC (REMEDIATE repairs it)");
                        self.engine.events.credential(*id, "OUT_OF_SYNC");
                    }
                }
                Ok(_) => {
                    sqlx::query!("UPDATE credentials SET heartbeat_at = $2 WHERE id = $1", id, now).execute(self.pool()).await?;
                }
                Err(e) => {
                    tracing::warn!(credential_id = %id, error = %e, "heartbeat could not tell; will try again next interval");
                    sqlx::query!("UPDATE credentials SET heartbeat_at = $2 WHERE id = $1", id, now).execute(self.pool()).await?;
                }
            }
        }
        Ok((ids.len(), drifted))
    }
}

/// After an auto-rotation ended: success schedules the next one (done by COMMIT); a
/// failure retries with backoff, and after `max_failures` stops and raises an event.
pub async fn after_auto_failure(
    conn: &mut sqlx::PgConnection,
    settings: &SchedulerSettings,
    credential_id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
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
    sqlx::query!("UPDATE credentials SET next_rotation_at = $2 WHERE id = $1", credential_id, next).execute(&mut *conn).await?;
    Ok(stopped)
}

/// Runs the tick and heartbeat jobs until `shutdown`.
pub async fn run(scheduler: Arc<Scheduler>, shutdown: CancellationToken) -> Result<(), tokio_cron_scheduler::JobSchedulerError> {
    let mut jobs = JobScheduler::new().await?;
    let s = scheduler.clone();
    jobs.add(Job::new_async(scheduler.settings.tick.as_str(), move |_, _| {
        let s = s.clone();
        Box::pin(async move {
            match s.tick(Utc::now()).await {
                Ok(t) => crate::metrics::scheduler_tick(t.leader),
                Err(e) => tracing::warn!(error = %e, "scheduler tick failed; the next tick tries again"),
            }
        })
    })?)
    .await?;
    if !scheduler.settings.heartbeat_tick.is_empty() {
        let s = scheduler.clone();
        jobs.add(Job::new_async(scheduler.settings.heartbeat_tick.as_str(), move |_, _| {
            let s = s.clone();
            Box::pin(async move {
                match s.heartbeat(Utc::now()).await {
                    Ok((checked, drifted)) => crate::metrics::heartbeat(checked, drifted),
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed; the next one tries again"),
                }
            })
        })?)
        .await?;
    }
    jobs.start().await?;
    tracing::info!(tick = %scheduler.settings.tick, heartbeat = %scheduler.settings.heartbeat_tick, "scheduler running");
    shutdown.cancelled().await;
    jobs.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(window: Option<&str>, tz: &str) -> Schedule {
        let s = SchedulerSettings { window: window.map(String::from), timezone: tz.into(), jitter_minutes: 0, ..Default::default() };
        Schedule::from_settings(&s).unwrap()
    }

    #[test]
    fn next_rotation_moves_into_the_window_in_its_time_zone() {
        let s = schedule(Some("01:00-05:00"), "Europe/Helsinki");
        let last = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        for _ in 0..50 {
            let next = s.next(last, 1).with_timezone(&"Europe/Helsinki".parse::<Tz>().unwrap());
            assert!(next.time() >= NaiveTime::from_hms_opt(1, 0, 0).unwrap() && next.time() < NaiveTime::from_hms_opt(5, 0, 0).unwrap(), "{next}");
            assert_eq!(next.date_naive().to_string(), "2026-11-25", "the window after the due time");
        }
        let inside = Utc.with_ymd_and_hms(2026, 11, 23, 0, 30, 0).unwrap(); // 02:30 in Helsinki
        assert_eq!(s.next(inside, 1), inside + chrono::Duration::days(1));
    }

    #[test]
    fn a_window_may_wrap_midnight_and_bad_ones_are_refused() {
        let s = schedule(Some("22:00-02:00"), "UTC");
        let last = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let next = s.next(last, 1);
        assert!(next >= Utc.with_ymd_and_hms(2026, 11, 24, 22, 0, 0).unwrap() && next < Utc.with_ymd_and_hms(2026, 11, 25, 2, 0, 0).unwrap(), "{next}");
        for bad in ["1-5", "01:00", "01:00-01:00"] {
            let st = SchedulerSettings { window: Some(bad.into()), ..Default::default() };
            assert!(Schedule::from_settings(&st).is_err(), "{bad}");
        }
        let st = SchedulerSettings { timezone: "Mars/Olympus".into(), ..Default::default() };
        assert!(Schedule::from_settings(&st).unwrap_err().to_string().contains("scheduler.timezone"));
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let s = Schedule::from_settings(&SchedulerSettings { jitter_minutes: 30, ..Default::default() }).unwrap();
        let last = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        for _ in 0..200 {
            let d = s.next(last, 7) - (last + chrono::Duration::days(7));
            assert!(d >= chrono::Duration::zero() && d < chrono::Duration::minutes(30));
        }
    }
}
