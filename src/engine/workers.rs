//! The workers: `concurrency` loops that claim a subtask, run its stages and claim
//! the next. An idle worker waits to be woken: once per new subtask (intake's and the
//! scheduler's NOTIFY says how many), by a worker whose claim succeeded (there may be
//! more), or by the fallback poll.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::context::Engine;
use super::lease::{self, WORK_CHANNEL};
use super::rotation;

/// Runs `concurrency` workers until `shutdown`; a running subtask is allowed to finish.
pub async fn run_workers(engine: Arc<Engine>, shutdown: CancellationToken) {
    if let Some(instance) = &engine.instance_id {
        match lease::release_stale_leases(&engine.pool, instance, &engine.worker_id).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                leases = n,
                "took back leases of this instance's previous run; resuming its rotations"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "cannot take back this instance's previous leases; they will expire")
            }
        }
    }
    let wake = Arc::new(Notify::new());
    let listener = tokio::spawn(listen_for_work(
        engine.pool.clone(),
        wake.clone(),
        shutdown.clone(),
    ));
    let load = Arc::new(Load::default());
    let ticker = tokio::spawn(poll(engine.poll_interval, wake.clone(), load.clone()));
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..engine.concurrency {
        let (engine, wake, shutdown, load) =
            (engine.clone(), wake.clone(), shutdown.clone(), load.clone());
        workers.spawn(async move { worker_loop(n, engine, wake, shutdown, load).await });
    }
    while workers.join_next().await.is_some() {}
    listener.abort();
    ticker.abort();
}

/// How busy the workers are: subtasks running now, and run so far.
#[derive(Default)]
struct Load {
    running: AtomicUsize,
    done: AtomicUsize,
}

/// The fallback for work no NOTIFY announces (a retry's or a spread start's time has
/// come, a NOTIFY lost with its connection): one idle worker looks every
/// `poll_interval`, and wakes the next if it found something. On the same beat, kept
/// admin sessions idle too long are closed, and once a burst of work is over the
/// memory it used is handed back.
async fn poll(interval: Duration, wake: Arc<Notify>, load: Arc<Load>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trimmed_at = 0;
    loop {
        ticks.tick().await;
        wake.notify_one();
        let done = load.done.load(Ordering::Relaxed);
        let idle_after_work = load.running.load(Ordering::Relaxed) == 0 && done != trimmed_at;
        if idle_after_work {
            trimmed_at = done;
        }
        // Blocking (an SSH goodbye, walking the heap), so not on this thread.
        tokio::task::spawn_blocking(move || {
            crate::driver::sessions::close_idle();
            if idle_after_work {
                crate::hygiene::release_free_memory();
            }
        });
    }
}

/// Waits between failed claims while the database is away: 200 ms doubling to 10 s.
fn claim_delays() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times()
        .build()
}

async fn worker_loop(
    n: usize,
    engine: Arc<Engine>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
    load: Arc<Load>,
) {
    let mut delays = claim_delays();
    // One worker looks for work left runnable at start (a resumed rotation, a backlog);
    // it wakes the next if it finds some. The others wait to be woken, so a start does
    // not open a database connection per worker.
    if n > 0 {
        tokio::select! {
            _ = wake.notified() => {}
            _ = shutdown.cancelled() => return,
        }
    }
    while !shutdown.is_cancelled() {
        // A burst of requests is recorded before more of them start (admission.rs).
        tokio::select! {
            _ = engine.admission.wait() => {}
            _ = shutdown.cancelled() => break,
        }
        match lease::claim(
            &engine.pool,
            &engine.worker_id,
            engine.lease_seconds,
            engine.per_host,
        )
        .await
        {
            Ok(Some(claim)) => {
                delays = claim_delays();
                // There may be more: the next idle worker looks. Claims run one after
                // another this way, each waking one more, never all workers at once.
                wake.notify_one();
                let span = tracing::info_span!("subtask", worker_id = %engine.worker_id, worker = n, task_id = %claim.task_id,
                    subtask_id = %claim.subtask_id, credential_id = %claim.credential_id, attempt = claim.attempts);
                load.running.fetch_add(1, Ordering::Relaxed);
                rotation::run(&engine, claim).instrument(span).await;
                load.running.fetch_sub(1, Ordering::Relaxed);
                load.done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = shutdown.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim work; database unreachable? retrying");
                let delay = delays.next().unwrap_or(Duration::from_secs(10));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
    }
}

/// One wake-up per unit of new work: the payload says how many subtasks were added
/// (engine::record); each `notify_one` wakes one idle worker, or lets the next worker
/// that goes idle claim at once. Waking every worker for one subtask sent them all
/// claiming for it at the same time.
fn wake_for(wake: &Notify, payload: &str) {
    match payload.parse::<usize>() {
        Ok(n) => (0..n.min(MAX_WAKE)).for_each(|_| wake.notify_one()),
        // Not a count (another version of rotor): wake everyone, as that one would.
        Err(_) => wake.notify_waiters(),
    }
}

/// More wake-ups than this at once are not useful: woken workers keep claiming until
/// nothing is runnable.
const MAX_WAKE: usize = 1024;

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
        if listener.listen(WORK_CHANNEL).await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                r = listener.recv() => match r {
                    Ok(n) => wake_for(&wake, n.payload()),
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
