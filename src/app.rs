//! The daemon (`rotor run`): wiring, named background tasks and an orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::engine::{self, Engine};
use crate::events::Events;
use crate::ingress::submit::Submitter;
use crate::ingress::{amqp, http};
use crate::vault::MasterKey;

/// How long running rotations get to reach a safe end after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(settings: Settings, migrate: bool) -> anyhow::Result<()> {
    let pool = crate::db::connect(&settings.database).await?;
    if migrate {
        crate::db::migrate(&pool).await?;
        tracing::info!("database migrations applied");
    }
    let key = Arc::new(MasterKey::load(&settings.vault)?);
    tracing::info!(key_id = key.key_id(), "master key loaded");
    let tokens = http::load_tokens(&settings.http)?;
    let amqp_url = settings.amqp.url()?;
    let shutdown = CancellationToken::new();
    let (events, events_task) = Events::start(pool.clone(), amqp_url.clone(), settings.amqp.events_exchange.clone(), shutdown.child_token());
    let engine = Arc::new(Engine::new(pool.clone(), key.clone(), &settings, events.clone())?);
    let submitter = Arc::new(Submitter {
        pool: pool.clone(),
        key,
        policies: engine.policies.clone(),
        max_credentials: settings.amqp.max_credentials_per_request,
        events,
        schedule: engine.schedule.clone(),
    });

    let listen: SocketAddr = settings.http.listen.parse()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} (http.listen): {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, "HTTP API listening");

    let stop_intake = shutdown.child_token();

    let broker_up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let intake = Arc::new(amqp::Intake { submitter: submitter.clone(), settings: settings.amqp.clone(), url: amqp_url, connected: broker_up.clone() });
    let intake_task = tokio::spawn(amqp::run(intake, stop_intake.clone()));

    let workers_task = tokio::spawn(engine::run_workers(engine.clone(), shutdown.clone()));

    let scheduler_task = if settings.scheduler.enabled {
        let scheduler = Arc::new(crate::scheduler::Scheduler { engine: engine.clone(), settings: settings.scheduler.clone() });
        let stop = shutdown.clone();
        Some(tokio::spawn(async move {
            if let Err(e) = crate::scheduler::run(scheduler, stop).await {
                tracing::error!(error = %e, "the scheduler stopped; auto-rotation and heartbeat are off until restart");
            }
        }))
    } else {
        tracing::info!("scheduler disabled (scheduler.enabled = false): no auto-rotation, no heartbeat in this process");
        None
    };

    let api = http::router(Arc::new(http::ApiState {
        pool: pool.clone(),
        tokens,
        submitter,
        started: std::time::Instant::now(),
        broker_up: broker_up.clone(),
        max_body_bytes: settings.amqp.max_message_bytes,
        type_policy: settings.type_policy.clone(),
    }));
    let http_stop = shutdown.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(listener, api).with_graceful_shutdown(async move { http_stop.cancelled().await }).await
    });

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let watchdog = spawn_watchdog(shutdown.clone());
    tracing::info!(worker = %engine.worker_id, concurrency = engine.concurrency, "rotor running");

    wait_for_signal().await;
    tracing::info!("shutting down: intake stops, running rotations finish their stages");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
    let _ = intake_task.await;
    if tokio::time::timeout(DRAIN_TIMEOUT, workers_task).await.is_err() {
        tracing::warn!("rotations still running after the drain timeout; their leases will expire and another worker resumes them");
    }
    let _ = http_task.await;
    if let Some(t) = scheduler_task {
        let _ = t.await;
    }
    let _ = events_task.await;
    if let Some(w) = watchdog {
        w.abort();
    }
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
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
fn spawn_watchdog(shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = Duration::from_micros(usec / 2);
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => { let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]); }
                _ = shutdown.cancelled() => return,
            }
        }
    }))
}
