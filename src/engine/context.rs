//! What every worker shares: the pool, the master key, the policies and the settings
//! the stages run under.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;

use crate::config::{SchedulerSettings, Settings};
use crate::policy::Policy;
use crate::schedule::Schedule;
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
    pub per_host: i64,
    pub schedule: Schedule,
    pub scheduler: SchedulerSettings,
    /// `[inventory] allowed_dir`, links resolved: admin files are read only from under it.
    pub allowed_dir: std::path::PathBuf,
    /// Held by AMQP intake's backlog before a worker claims new work.
    pub admission: Arc<super::admission::Admission>,
}

impl Engine {
    pub fn new(
        pool: PgPool,
        key: Arc<MasterKey>,
        settings: &Settings,
    ) -> Result<Self, crate::config::Error> {
        let host = crate::hygiene::hostname();
        let instance = settings
            .worker
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("{}:{}", host.trim(), std::process::id()));
        let allowed_dir = std::fs::canonicalize(&settings.inventory.allowed_dir)
            .unwrap_or_else(|_| settings.inventory.allowed_dir.clone());
        Ok(Engine {
            allowed_dir,
            pool,
            key,
            policies: Arc::new(settings.policies()?),
            worker_id: format!(
                "{instance}/{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
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
            per_host: settings.worker.per_host,
            schedule: settings.scheduler.schedule()?,
            scheduler: settings.scheduler.clone(),
            admission: Arc::default(),
        })
    }

    /// Delay before attempt `attempts + 1`: `retry_base_ms` doubling with each attempt up
    /// to `retry_max_ms`, with jitter (backon's exponential backoff).
    pub fn backoff_ms(&self, attempts: i32) -> i64 {
        use backon::BackoffBuilder;
        let delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.retry_base_ms.max(1) / 2))
            .with_max_delay(Duration::from_millis(self.retry_max_ms.max(1) / 2))
            .with_jitter()
            .without_max_times()
            .build();
        let n = usize::try_from(attempts.clamp(1, 64) - 1).unwrap_or(0);
        delays.skip(n).next().map_or(0, |d| d.as_millis() as i64)
    }
}
