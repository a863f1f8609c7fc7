//! `rotor scheduler tick|heartbeat`: one round by hand, as the daemon's cron job runs it.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Subcommand;

use crate::config::Settings;
use crate::engine::Engine;
use crate::scheduler::Scheduler;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one scheduler tick now: create the auto-rotation tasks that are due (a running
    /// daemon's workers carry them out). Does nothing while another instance holds the lock.
    Tick {
        #[arg(long)]
        json: bool,
    },
    /// Run one heartbeat round now: check stored current passwords against their targets.
    Heartbeat {
        #[arg(long)]
        json: bool,
    },
    /// Show the breaker: open (auto-rotation paused everywhere, and why) or closed.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Close the breaker: auto-rotation resumes at the next tick (audited).
    Resume,
}

pub async fn run(settings: &Settings, command: Command) -> anyhow::Result<ExitCode> {
    let pool = crate::db::connect(&settings.database).await?;
    match command {
        Command::Status { json } => {
            let b = crate::breaker::status(&pool).await?;
            if json {
                println!("{}", serde_json::to_string(&b)?);
            } else if b.open {
                println!(
                    "breaker OPEN since {}: {}",
                    b.opened_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    b.reason
                );
                println!("auto-rotation is paused everywhere; `rotor scheduler resume` closes it");
            } else {
                println!("breaker closed: auto-rotation runs");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Resume => {
            let closed = crate::breaker::close(&pool, &crate::access::Requester::os_user()).await?;
            println!(
                "{}",
                if closed {
                    "breaker closed: auto-rotation resumes at the next tick"
                } else {
                    "the breaker was not open"
                }
            );
            return Ok(ExitCode::SUCCESS);
        }
        Command::Tick { json } => {
            let scheduler = scheduler_for(settings, pool)?;
            let started = Instant::now();
            let tick = scheduler.tick(chrono::Utc::now()).await?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"leader": tick.leader, "due": tick.due, "created": tick.created, "milliseconds": ms})
                );
            } else if !tick.leader {
                println!("another instance holds the scheduler lock; nothing done");
            } else {
                println!(
                    "{} due, {} auto-rotation tasks created in {ms:.1} ms",
                    tick.due, tick.created
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Heartbeat { json } => {
            let scheduler = scheduler_for(settings, pool)?;
            let started = Instant::now();
            let (checked, drifted) = scheduler.heartbeat(chrono::Utc::now()).await?;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"checked": checked, "outOfSync": drifted, "milliseconds": ms})
                );
            } else {
                println!("{checked} checked, {drifted} found OUT_OF_SYNC, in {ms:.0} ms");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A scheduler over this process's engine, for one round by hand.
fn scheduler_for(settings: &Settings, pool: sqlx::PgPool) -> anyhow::Result<Scheduler> {
    let key = Arc::new(crate::vault::MasterKey::load(&settings.vault)?);
    Ok(Scheduler {
        engine: Arc::new(Engine::new(pool, key, settings)?),
        settings: settings.scheduler.clone(),
    })
}
