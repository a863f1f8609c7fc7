//! The engine: workers claim subtasks from PostgreSQL and run their stages.

pub mod control;
pub mod model;
mod recovery;
pub mod repo;
mod rotation;

pub use rotation::check_current;
pub mod view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Settings;
use crate::policy::Policy;
use crate::vault::MasterKey;

/// What every worker shares.
pub struct Engine {
    pub pool: PgPool,
    pub key: Arc<MasterKey>,
    pub policies: Arc<BTreeMap<String, Policy>>,
    /// `<instance>/<boot>`: leases are owned by one run of one process.
    pub worker_id: String,
    pub instance_id: Option<String>,
    pub concurrency: usize,
    pub lease_seconds: f64,
    pub max_attempts: i32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub poll_interval: Duration,
    pub connect_timeout: Duration,
    pub io_timeout: Duration,
    pub max_versions: i64,
    pub events: crate::events::Events,
    pub per_host: i64,
    pub schedule: crate::scheduler::Schedule,
    pub scheduler: crate::config::SchedulerSettings,
}

impl Engine {
    pub fn new(pool: PgPool, key: Arc<MasterKey>, settings: &Settings, events: crate::events::Events) -> Result<Self, crate::config::Error> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let instance = settings.worker.instance_id.clone().unwrap_or_else(|| format!("{}:{}", host.trim(), std::process::id()));
        Ok(Engine {
            pool,
            key,
            policies: Arc::new(settings.policies()?),
            worker_id: format!("{instance}/{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            instance_id: settings.worker.instance_id.clone(),
            concurrency: settings.worker.concurrency,
            lease_seconds: f64::from(settings.worker.lease_seconds),
            max_attempts: settings.worker.max_attempts as i32,
            retry_base_ms: settings.worker.retry_base_ms,
            retry_max_ms: settings.worker.retry_max_ms,
            poll_interval: Duration::from_millis(settings.worker.poll_interval_ms),
            connect_timeout: Duration::from_millis(settings.ssh.connect_timeout_ms),
            io_timeout: Duration::from_millis(settings.ssh.io_timeout_ms),
            max_versions: i64::from(settings.vault.max_versions),
            events,
            per_host: settings.worker.per_host,
            schedule: crate::scheduler::Schedule::from_settings(&settings.scheduler)?,
            scheduler: settings.scheduler.clone(),
        })
    }

    /// Delay before attempt `attempts + 1`: exponential with full jitter in its upper half.
    fn backoff_ms(&self, attempts: i32) -> i64 {
        use rand::{Rng, TryRngCore};
        let exp = self.retry_base_ms.saturating_mul(1u64 << attempts.clamp(0, 20).saturating_sub(1));
        let cap = exp.min(self.retry_max_ms).max(1);
        let jittered = cap / 2 + rand::rngs::OsRng.unwrap_err().random_range(0..=cap / 2);
        jittered as i64
    }
}

/// Runs `concurrency` workers until `shutdown`; a running subtask is allowed to finish.
pub async fn run_workers(engine: Arc<Engine>, shutdown: CancellationToken) {
    if let Some(instance) = &engine.instance_id {
        match repo::release_stale_leases(&engine.pool, instance, &engine.worker_id).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(leases = n, "took back leases of this instance's previous run; resuming its rotations"),
            Err(e) => tracing::warn!(error = %e, "cannot take back this instance's previous leases; they will expire"),
        }
    }
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen_for_work(engine.pool.clone(), wake.clone(), shutdown.clone()));
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..engine.concurrency {
        let (engine, wake, shutdown) = (engine.clone(), wake.clone(), shutdown.clone());
        workers.spawn(async move { worker_loop(n, engine, wake, shutdown).await });
    }
    while workers.join_next().await.is_some() {}
    listener.abort();
}

async fn worker_loop(n: usize, engine: Arc<Engine>, wake: Arc<Notify>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match repo::claim(&engine.pool, &engine.worker_id, engine.lease_seconds, engine.per_host).await {
            Ok(Some(claim)) => {
                backoff = Duration::from_millis(200);
                engine.events.subtask(claim.task_id, "IN_PROGRESS");
                if claim.task_started {
                    engine.events.task(claim.task_id, "IN_PROGRESS");
                }
                let span = tracing::info_span!("subtask", worker_id = %engine.worker_id, worker = n, task_id = %claim.task_id,
                    subtask_id = %claim.subtask_id, credential_id = %claim.credential_id, attempt = claim.attempts);
                rotation::run(&engine, claim).instrument(span).await;
            }
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(engine.poll_interval) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim work; database unreachable? retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Wakes idle workers when intake (in any process) NOTIFYs new work.
async fn listen_for_work(pool: PgPool, wake: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "work listener cannot connect; workers keep polling");
                tokio::select! { _ = tokio::time::sleep(Duration::from_secs(2)) => continue, _ = shutdown.cancelled() => return }
            }
        };
        if listener.listen(repo::WORK_CHANNEL).await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                r = listener.recv() => match r {
                    Ok(_) => wake.notify_waiters(),
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
