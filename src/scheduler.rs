//! Auto-rotation every `frequencyInDays`, and the heartbeat.
//!
//! Each tick, the one instance holding an advisory lock turns due credentials (by this
//! process's clock, so a daemon under libfaketime sees the future) into ROTATE tasks with
//! `isAutoRotate = true`, a bounded batch at a time. A backlog larger than `burst` is
//! spread over `catch_up_seconds`. The heartbeat logs in with stored current passwords
//! and marks a credential whose password changed behind rotor's back OUT_OF_SYNC; the
//! scheduler never rotates such a credential until REMEDIATE clears it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::config::SchedulerSettings;
use crate::driver::Login;
use crate::engine::lifecycle;
use crate::engine::outbox;
use crate::engine::outbox::CredentialAlert;
use crate::engine::record::{self, Spread};
use crate::engine::{Engine, Error};

const TICK_LOCK: i64 = 0x726f_746f_7201; // "rotor" 1
const HEARTBEAT_LOCK: i64 = 0x726f_746f_7202;
/// Held by the one instance reading password expiries.
const EXPIRY_LOCK: i64 = 0x726f_746f_7205;

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

    /// One tick at `now` (this process's clock). Four statements in one transaction: the
    /// leader lock, the breaker, the backlog, and the batch (`record::auto_rotations`).
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Tick, Error> {
        let mut tx = self.pool().begin().await?;
        // This commit need not wait for its WAL flush: lost in a crash, it is lost whole
        // and the credentials are still due at the next tick; and whatever a worker then
        // commits durably flushes the WAL before it, this transaction's included. (The
        // breaker's opening sets it back on.)
        let leader = sqlx::query!(
            r#"SELECT pg_try_advisory_xact_lock($1) AS "ok!", set_config('synchronous_commit', 'off', true)"#,
            TICK_LOCK
        )
        .fetch_one(&mut *tx)
        .await?
        .ok;
        if !leader {
            return Ok(Tick::default());
        }
        // Nothing starts while the breaker holds (too many recent auto-rotations failed,
        // or an operator has not yet resumed after that), nor outside the allowed window,
        // whatever planned it (a catch-up after a downtime, a retry, a resume): what is
        // due stays due.
        let held = crate::breaker::holds(&mut tx, &self.settings).await?
            || !self.engine.schedule.inside_window(now);
        // A held tick only counts what is due (no burst it could exceed: no spread read).
        let burst = if held { i64::MAX } else { self.settings.burst };
        let (due, ahead) = lifecycle::backlog(&mut tx, now, burst).await?;
        if held || due == 0 {
            tx.commit().await?;
            return Ok(Tick {
                leader,
                due,
                created: 0,
            });
        }
        // A backlog is spread: starts follow the last one already planned, evenly over
        // what is left of catch_up_seconds. Delays are relative, so the database's clock
        // and this process's may differ (libfaketime in the tests).
        let spread = if due > self.settings.burst {
            let catch_up = self.settings.catch_up_seconds as f64;
            let left = (catch_up - ahead).max(catch_up / 10.0);
            Spread {
                delay: ahead,
                spacing: left / due as f64,
            }
        } else {
            Spread::default()
        };
        let created = record::auto_rotations(&mut tx, now, self.settings.batch, spread).await?;
        tx.commit().await?;
        if created > 0 {
            tracing::info!(due, created, "auto-rotations scheduled");
        }
        Ok(Tick {
            leader,
            due,
            created,
        })
    }

    /// Reads the OS password expiry of auto-rotating credentials not read for a day (one
    /// instance at a time), which plans their rotations ahead of it.
    pub async fn expiry_round(&self) -> Result<usize, Error> {
        let mut lock = self.pool().acquire().await?;
        let leader =
            sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "ok!""#, EXPIRY_LOCK)
                .fetch_one(&mut *lock)
                .await?;
        if !leader {
            return Ok(0);
        }
        let result = crate::engine::expiry::refresh_due(&self.engine, 500).await;
        let _ = sqlx::query!("SELECT pg_advisory_unlock($1)", EXPIRY_LOCK)
            .fetch_one(&mut *lock)
            .await;
        Ok(result?)
    }

    /// Checks up to `heartbeat_batch` stored current passwords against their targets.
    pub async fn heartbeat(&self, now: DateTime<Utc>) -> Result<(usize, usize), Error> {
        let mut lock = self.pool().acquire().await?;
        let leader = sqlx::query_scalar!(
            r#"SELECT pg_try_advisory_lock($1) AS "ok!""#,
            HEARTBEAT_LOCK
        )
        .fetch_one(&mut *lock)
        .await?;
        if !leader {
            return Ok((0, 0));
        }
        let result = self.heartbeat_as_leader(now).await;
        let _ = sqlx::query!("SELECT pg_advisory_unlock($1)", HEARTBEAT_LOCK)
            .fetch_one(&mut *lock)
            .await;
        result
    }

    async fn heartbeat_as_leader(&self, now: DateTime<Utc>) -> Result<(usize, usize), Error> {
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
                    let mut tx = self.pool().begin().await?;
                    let marked = lifecycle::mark_out_of_sync(&mut tx, *id, version, now).await?;
                    if marked {
                        outbox::credential(&mut tx, *id, CredentialAlert::OutOfSync).await?;
                    }
                    tx.commit().await?;
                    if marked {
                        drifted += 1;
                        tracing::warn!(target: "rotor::security", credential_id = %id,
                            "heartbeat: the stored password no longer logs in; marked OUT_OF_SYNC (REMEDIATE repairs it)");
                    }
                }
                Ok(_) => {
                    lifecycle::heartbeat_checked(&mut *self.pool().acquire().await?, *id, now)
                        .await?
                }
                Err(e) => {
                    tracing::warn!(credential_id = %id, error = %e, "heartbeat could not tell; will try again next interval");
                    lifecycle::heartbeat_checked(&mut *self.pool().acquire().await?, *id, now)
                        .await?;
                }
            }
        }
        Ok((ids.len(), drifted))
    }
}

/// Runs the tick and heartbeat jobs until `shutdown`.
pub async fn run(
    scheduler: Arc<Scheduler>,
    shutdown: CancellationToken,
) -> Result<(), tokio_cron_scheduler::JobSchedulerError> {
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
        jobs.add(Job::new_async(
            scheduler.settings.heartbeat_tick.as_str(),
            move |_, _| {
                let s = s.clone();
                Box::pin(async move {
                    match s.heartbeat(Utc::now()).await {
                        Ok((checked, drifted)) => crate::metrics::heartbeat(checked, drifted),
                        Err(e) => {
                            tracing::warn!(error = %e, "heartbeat failed; the next one tries again")
                        }
                    }
                })
            },
        )?)
        .await?;
    }
    if !scheduler.settings.expiry_tick.is_empty() {
        let s = scheduler.clone();
        jobs.add(Job::new_async(
            scheduler.settings.expiry_tick.as_str(),
            move |_, _| {
                let s = s.clone();
                Box::pin(async move {
                    match s.expiry_round().await {
                        Ok(read) => tracing::info!(read, "password expiry round done"),
                        Err(e) => {
                            tracing::warn!(error = %e, "password expiry round failed; the next one tries again")
                        }
                    }
                })
            },
        )?)
        .await?;
    }
    jobs.start().await?;
    tracing::info!(tick = %scheduler.settings.tick, heartbeat = %scheduler.settings.heartbeat_tick, "scheduler running");
    shutdown.cancelled().await;
    jobs.shutdown().await
}
