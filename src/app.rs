//! The daemon (`rotor run`): `Application::build` connects, loads the keys and binds
//! the HTTP port; `run_until_stopped` runs the named background tasks and, when asked
//! to stop, shuts down in phases so nothing in flight is lost:
//! 1. intake (AMQP) and the scheduler stop taking new work;
//! 2. running rotations reach a safe end (up to `DRAIN_TIMEOUT`);
//! 3. the event publisher flushes what they reported;
//! 4. the HTTP API stops (operators can watch the drain until then);
//! 5. the database pool closes last.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::engine::{self, Engine};
use crate::ingress::submit::Submitter;
use crate::ingress::{amqp, http};
use crate::scheduler::Scheduler;
use crate::vault::MasterKey;

/// How long running rotations get to reach a safe end after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A background task with a name: its failure or panic is logged under that name when
/// it happens, and shutdown waits for it by name.
struct Named {
    name: &'static str,
    handle: JoinHandle<()>,
}

fn spawn_named<F>(name: &'static str, work: F) -> Named
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let handle = tokio::spawn(async move {
        match AssertUnwindSafe(work).catch_unwind().await {
            Ok(Ok(())) => tracing::debug!(task = name, "background task stopped"),
            Ok(Err(e)) => {
                tracing::error!(task = name, error = %format!("{e:#}"), "background task failed")
            }
            Err(_) => tracing::error!(task = name, "background task panicked"),
        }
    });
    Named { name, handle }
}

impl Named {
    async fn join(self) {
        if let Err(e) = self.handle.await {
            tracing::error!(task = self.name, error = %e, "background task could not be joined");
        }
    }

    /// Waits up to `limit`; false when it was still running.
    async fn join_within(self, limit: Duration) -> bool {
        let name = self.name;
        let finished = tokio::time::timeout(limit, self.join()).await.is_ok();
        if !finished {
            tracing::warn!(task = name, "still running after {limit:?}");
        }
        finished
    }
}

/// Everything `rotor run` needs, connected and bound, not yet running.
pub struct Application {
    settings: Settings,
    link: crate::broker::Link,
    tokens: Vec<http::Token>,
    users: http::Users,
    pool: PgPool,
    engine: Arc<Engine>,
    submitter: Arc<Submitter>,
    listeners: http::Listeners,
    http_addr: SocketAddr,
    events_task: Named,
    flush_events: CancellationToken,
}

impl Application {
    /// Connects to the database (migrating it when asked), loads the master key and the
    /// API tokens, starts the event publisher and binds the HTTP port.
    pub async fn build(settings: Settings, migrate: bool) -> anyhow::Result<Self> {
        let pool = crate::db::connect(&settings.database).await?;
        if migrate {
            crate::db::migrate(&pool).await?;
            tracing::info!("database migrations applied");
        }
        crate::audit::warn_if_rewritable(&pool).await?;
        let key = Arc::new(MasterKey::load(&settings.vault)?);
        tracing::info!(key_id = key.key_id(), keyring = %key.key_ids().join(","), "master keys loaded; the first seals");
        let tokens = http::load_tokens(&settings.http)?;
        let users = http::Users::load(&settings.http, key.clone())?;
        let link = crate::broker::Link::from_settings(&settings.amqp)?;
        link.probe().await?;
        let flush_events = CancellationToken::new();
        let webhooks = crate::engine::webhooks::Webhooks::load(&settings.webhook)?;
        // The publishers have a pool of their own: a LISTEN connection and one a sink.
        let events_pool = crate::db::connect_sized(&settings.database, 3).await?;
        let events_task = crate::engine::events::start(
            events_pool,
            link.clone(),
            settings.amqp.events_exchange.clone(),
            webhooks,
            flush_events.clone(),
        );
        let events_task = Named {
            name: "event publisher",
            handle: events_task,
        };
        let engine = Arc::new(Engine::new(pool.clone(), key.clone(), &settings)?);
        // Requests are recorded through a pool of their own: 64 workers busy on the
        // shared one never hold intake up (nor the other way round).
        let intake_pool =
            crate::db::connect_sized(&settings.database, crate::db::INTAKE_CONNECTIONS).await?;
        let submitter = Arc::new(Submitter {
            pool: intake_pool,
            key,
            policies: engine.policies.clone(),
            max_credentials: settings.amqp.max_credentials_per_request,
            schedule: engine.schedule.clone(),
        });
        let listeners = http::Listeners::bind(&settings.http).await?;
        let http_addr = listeners.api_addr()?;
        let scheme = if listeners.is_tls() { "https" } else { "http" };
        tracing::info!(addr = %http_addr, scheme, ops = ?listeners.ops_addr(), "HTTP API listening");
        Ok(Application {
            settings,
            link,
            tokens,
            users,
            pool,
            engine,
            submitter,
            listeners,
            http_addr,
            events_task,
            flush_events,
        })
    }

    /// The address the HTTP API is bound to (`http.listen` with port 0 picks one).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Runs intake, workers, scheduler and the API until `stop` resolves, then shuts
    /// down in phases (see the module's comment).
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Application {
            settings,
            link,
            tokens,
            users,
            pool,
            engine,
            submitter,
            listeners,
            http_addr,
            events_task,
            flush_events,
        } = self;
        let stop_intake = CancellationToken::new();
        let stop_workers = CancellationToken::new();
        let stop_http = CancellationToken::new();

        let broker_up = Arc::new(AtomicBool::new(false));
        let intake = Arc::new(amqp::Intake {
            submitter: submitter.clone(),
            settings: settings.amqp.clone(),
            link,
            connected: broker_up.clone(),
            refused: Default::default(),
            admission: engine.admission.clone(),
        });
        let intake_task = spawn_named("amqp intake", {
            let stop = stop_intake.clone();
            async move {
                amqp::run(intake, stop).await;
                Ok(())
            }
        });
        let workers_task = spawn_named("workers", {
            let (engine, stop) = (engine.clone(), stop_workers.clone());
            async move {
                engine::run_workers(engine, stop).await;
                Ok(())
            }
        });
        // Bulk rotations start new work: they stop with intake.
        let bulk_task = spawn_named("bulk rotations", {
            let (engine, stop) = (engine.clone(), stop_intake.clone());
            async move {
                crate::bulk::runner::run(engine, stop).await;
                Ok(())
            }
        });
        let scheduler_task = if settings.scheduler.enabled {
            let scheduler = Arc::new(Scheduler {
                engine: engine.clone(),
                settings: settings.scheduler.clone(),
            });
            let stop = stop_intake.clone();
            Some(spawn_named("scheduler", async move {
                Ok(crate::scheduler::run(scheduler, stop).await?)
            }))
        } else {
            tracing::info!("scheduler disabled (scheduler.enabled = false): no auto-rotation, no heartbeat in this process");
            None
        };
        let scheme = if listeners.is_tls() { "HTTPS" } else { "HTTP" };
        let ops = listeners
            .ops_addr()
            .map(|a| format!(", ops on {a}"))
            .unwrap_or_default();
        let api = Arc::new(http::ApiState {
            pool: pool.clone(),
            tokens,
            submitter: submitter.clone(),
            started: std::time::Instant::now(),
            broker_up,
            max_body_bytes: settings.amqp.max_message_bytes,
            type_policy: settings.type_policy.clone(),
            failed_auth: crate::ingress::guard::FailedAuth::new(settings.http.failed_login_limit),
            users,
            engine: engine.clone(),
            deploy: http::DeployConfig {
                admin_username: settings.deploy.admin_username.clone(),
                admin_key_file: settings.deploy.admin_key_file.clone(),
                api_url: settings.deploy.api_url.clone(),
                ca_pem: match &settings.deploy.ca_file {
                    Some(f) => Some(std::fs::read_to_string(f).map_err(|e| {
                        anyhow::anyhow!("deploy.ca_file: cannot read {}: {e}", f.display())
                    })?),
                    None => None,
                },
                token_minutes: settings.deploy.token_minutes,
                scheme: if listeners.is_tls() { "https" } else { "http" },
            },
        });
        let http_task = spawn_named("http api", listeners.serve(api, stop_http.clone()));
        let watchdog = spawn_watchdog(stop_http.clone());

        let status = format!("serving {scheme} on {http_addr}{ops}");
        crate::hygiene::release_free_memory();
        let _ = sd_notify::notify(
            false,
            &[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&status),
            ],
        );
        tracing::info!(worker = %engine.worker_id, concurrency = engine.concurrency, "rotor running");

        stop.await;
        tracing::info!("shutting down: intake stops, running rotations finish their stages");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        // 1. No new work.
        stop_intake.cancel();
        intake_task.join().await;
        bulk_task.join().await;
        if let Some(t) = scheduler_task {
            t.join().await;
        }
        // 2. Running stages reach a safe end.
        stop_workers.cancel();
        if !workers_task.join_within(DRAIN_TIMEOUT).await {
            tracing::warn!("rotations still running after the drain timeout; their leases will expire and another worker resumes them");
        }
        // 3. What they reported is published.
        flush_events.cancel();
        events_task.join().await;
        // 4. The API, which served the drain.
        stop_http.cancel();
        http_task.join().await;
        if let Some(w) = watchdog {
            w.join().await;
        }
        // 5. The pools, last.
        pool.close().await;
        submitter.pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// `rotor run`: builds the application and runs it until SIGTERM or Ctrl-C.
pub async fn run(settings: Settings, migrate: bool) -> anyhow::Result<()> {
    let app = Application::build(settings, migrate).await?;
    app.run_until_stopped(wait_for_signal()).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Pings systemd's watchdog at half its interval, when one is configured.
fn spawn_watchdog(stop: CancellationToken) -> Option<Named> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = Duration::from_micros(usec / 2);
    Some(spawn_named("watchdog", async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => { let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]); }
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }))
}
